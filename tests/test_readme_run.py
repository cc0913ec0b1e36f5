"""The quick ``keyhead ...`` commands of the README's code blocks, run end to end as a new user types them.

``tests/test_readme.py`` checks that every README command names real subcommands and options; here the commands
run, in-process, in a sandbox folder holding every name the README uses (``path/to/project``, ``frames/``,
``session1.mp4``, ``runs/my_run``, ...), made from one tiny synthetic dataset. A README line is only ever extended,
never rewritten: the smallest settings (tiny backbone, 64x64 input, one epoch, a few video frames, no progress bars)
are appended so that each command finishes in seconds on a CPU. ``runs/heatmap_lite0`` is the run that the README's
own ``keyhead train my.yaml ...`` line trains (``my.yaml`` from ``keyhead config show``); ``runs/my_run``,
``runs/a``, ``runs/b`` and ``runs/c`` are copies of it.

Every command line of the README is either in ``RUN`` or in ``SKIP`` with its reason
(``test_every_readme_command_is_run_or_skipped``), so a new README command cannot slip through untested.
"""

from __future__ import annotations

import contextlib
import io
import shlex
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from keyhead.cli import main
from tests.cli_helpers import SIZE, TINY_SETTINGS
from tests.test_readme import README, readme_commands

TINY_TRAIN = (*TINY_SETTINGS, "--no-progress")
QUICK_VIDEO = ("--max-frames", "5", "--no-progress")

Check = Callable[[Path, str], None]  # (sandbox, stdout) -> None; asserts what the command wrote


def wrote(*paths: str) -> Check:
    def check(sandbox: Path, out: str) -> None:
        for p in paths:
            assert (sandbox / p).exists(), f"{p} was not written"

    return check


def prints(*needles: str) -> Check:
    def check(sandbox: Path, out: str) -> None:
        for needle in needles:
            assert needle in out, (needle, out[-2000:])

    return check


def holds(pattern: str, text: str = "") -> Check:
    """Some file matching ``pattern`` (a glob under the sandbox) exists, containing ``text``."""

    def check(sandbox: Path, out: str) -> None:
        found = sorted(sandbox.glob(pattern))
        assert found, f"no {pattern} was written"
        assert any(text in p.read_text(errors="replace") for p in found), f"{text!r} not in {pattern}"

    return check


def both(*checks: Check) -> Check:
    def check(sandbox: Path, out: str) -> None:
        for c in checks:
            c(sandbox, out)

    return check


CONFIG_SHOW = "keyhead config show heatmap_efficientnet_lite0 > my.yaml"
TRAIN = "keyhead train my.yaml data.path=path/to/project train.epochs=100"
ENSEMBLE = (
    "keyhead predict runs/a frames/ test_vid.mp4 --ensemble runs/b --ensemble runs/c --combine median --out preds/"
)
VIDEOS = "keyhead predict runs/my_run session1.mp4 session2.avi --labeled-video"
MANY_VIDEOS = "keyhead predict runs/my_run videos/ --jobs 2 --out predictions/"
LOCAL_WEIGHTS = "keyhead train heatmap_resnet18 data.path=path/to/project model.pretrained=resnet18.safetensors"

# README line -> (arguments appended, check of what it wrote). They run in this order on one shared sandbox.
RUN: dict[str, tuple[tuple[str, ...], Check]] = {
    "keyhead config list": ((), prints("heatmap_efficientnet_lite0", "face_heatmap")),
    CONFIG_SHOW: ((), holds("my.yaml", "name: heatmap_lite0")),
    TRAIN: (TINY_TRAIN, both(prints("runs/heatmap_lite0"), wrote("runs/heatmap_lite0/model.safetensors"))),
    "keyhead train --resume runs/heatmap_lite0": (
        ("--no-progress",),
        both(prints("run folder: runs/heatmap_lite0"), wrote("runs/heatmap_lite0/last.safetensors")),
    ),
    "keyhead evaluate runs/heatmap_lite0": (("--no-progress",), wrote("runs/heatmap_lite0/metrics.json")),
    "keyhead evaluate runs/heatmap_lite0 --data other/project": (
        ("--no-progress",),
        wrote("runs/heatmap_lite0/eval-project/metrics.json"),
    ),
    "keyhead evaluate runs/heatmap_lite0 --decoder argmax": (
        ("--no-progress",),
        wrote("runs/heatmap_lite0/eval-decoder-argmax/metrics.json"),
    ),
    "keyhead predict runs/heatmap_lite0 frames/ img.png --out preds/": (
        ("--no-progress",),
        wrote("preds/predictions.csv"),
    ),
    "keyhead models": ((), prints("heatmap", "tiny", "calibrated_maxima")),
    "keyhead profile fomm_kp --out prof/": (
        ("--repeats", "1", "--warmup", "0", "--input-size", "128"),  # fomm_kp's smallest input
        wrote("prof/profile.md"),
    ),
    VIDEOS: (
        QUICK_VIDEO,
        wrote(*(f"runs/my_run/predictions/{s}{f}" for s in ("session1", "session2") for f in (".csv", "_labeled.mp4"))),
    ),
    MANY_VIDEOS: (QUICK_VIDEO, wrote(*(f"predictions/{s}.csv" for s in ("session1", "session2", "long")))),
    "keyhead predict runs/my_run long.mp4 --max-frames 500": (
        ("--no-progress",),
        wrote("runs/my_run/predictions/long.csv", "runs/my_run/predictions/long_video.json"),
    ),
    ENSEMBLE: (("--no-progress",), wrote("preds/test_vid.csv", "preds/test_vid_variance.csv", "preds/predictions.csv")),
    "keyhead report runs/heatmap_lite0": ((), wrote("runs/heatmap_lite0/report.html")),
    "keyhead report runs/heatmap_lite0 --out report.html --video-predictions preds/test_vid.csv": (
        (),
        holds("report.html", "test_vid"),
    ),
    "keyhead convert dlc-project/ labels.json": ((), wrote("labels.json")),
    "keyhead convert labels.json lp-project/ --to lp-csv": ((), wrote("lp-project/CollectedData.csv")),
    "keyhead convert lp-project/ dlc-project2/ --to dlc-h5 --scorer me": ((), wrote("dlc-project2/config.yaml")),
    "keyhead convert CollectedData.csv table.h5": ((), wrote("table.h5")),
    "keyhead convert labels.json faces/ --to pts": ((), holds("faces/**/*.pts")),
    "keyhead convert runs/my_run/predictions/session1.csv session1.slp --skeleton runs/my_run": (
        (),
        wrote("session1.slp"),
    ),
    "keyhead convert runs/my_run/predictions/session1.csv session1.analysis.h5": ((), wrote("session1.analysis.h5")),
    "keyhead convert runs/my_run/predictions/session1.csv session1.nwb": ((), wrote("session1.nwb")),
    "keyhead smooth preds/test_vid.csv --out preds/test_vid_smoothed.csv --method kalman --min-confidence 0.5": (
        (),
        both(prints("preds/test_vid_smoothed.csv"), wrote("preds/test_vid_smoothed.csv")),
    ),
    "keyhead smooth preds/test_vid.csv --method savgol --window 9 --order 2": (
        (),
        both(prints("preds/test_vid_smoothed.csv"), wrote("preds/test_vid_smoothed.csv")),  # the default --out
    ),
    "keyhead convert-weights resnet18.pth resnet18.safetensors --trust-pickle": ((), wrote("resnet18.safetensors")),
    LOCAL_WEIGHTS: (
        (
            f"data.input_size=[{SIZE},{SIZE}]",
            "train.epochs=1",
            "train.batch_size=4",
            "augment.enabled=false",
            "--no-progress",
        ),
        wrote("runs/heatmap_resnet18/model.safetensors"),
    ),
}

# README line -> the README lines whose outputs it reads: run first (once) when not run yet, e.g. under `-k`.
NEEDS: dict[str, tuple[str, ...]] = {
    TRAIN: (CONFIG_SHOW,),
    LOCAL_WEIGHTS: ("keyhead convert-weights resnet18.pth resnet18.safetensors --trust-pickle",),
    "keyhead report runs/heatmap_lite0 --out report.html --video-predictions preds/test_vid.csv": (ENSEMBLE,),
    "keyhead convert labels.json lp-project/ --to lp-csv": ("keyhead convert dlc-project/ labels.json",),
    "keyhead convert lp-project/ dlc-project2/ --to dlc-h5 --scorer me": (
        "keyhead convert labels.json lp-project/ --to lp-csv",
    ),
    "keyhead convert labels.json faces/ --to pts": ("keyhead convert dlc-project/ labels.json",),
    **{line: (VIDEOS,) for line in RUN if line.startswith("keyhead convert runs/my_run/predictions/session1.csv")},
    **{line: (ENSEMBLE,) for line in RUN if line.startswith("keyhead smooth preds/test_vid.csv")},
}

# README line -> why it is not run here.
SKIP: dict[str, str] = {
    "keyhead evaluate runs/heatmap_lite0 --cv 5 --out cv/": "trains five runs: tests/evaluation/test_crossval.py runs "
    "--cv through the CLI",
    "keyhead synth data/": "run in an empty folder of its own: test_synth_in_empty_folder",
    "keyhead predict runs/my_run long.mp4 --runtime onnx": "exports the video graphs with torch.onnx: ~20 s even for "
    "the tiny model (tests/inference/test_video.py runs --runtime onnx)",
    "keyhead predict runs/my_run /data/videos/ --out /data/predictions/ --shard $SLURM_ARRAY_TASK_ID/10 --jobs 2 "
    "--no-progress": "a SLURM job array's task; tests/inference/test_parallel_videos.py runs --shard 0/2 and 1/2 "
    "as two concurrent local processes through the CLI",
    "keyhead predict runs/my_run long.mp4 --runtime openvino": "exports the video graphs with torch.onnx (~20 s); "
    "tests/inference/test_video_runtimes.py runs --runtime openvino through the CLI",
    "keyhead export runs/my_run --format onnx-int8": "exports and quantizes (~30 s); "
    "tests/inference/test_video_runtimes.py runs --format onnx-int8 and --runtime onnx-int8 through the CLI",
    "keyhead export runs/heatmap_lite0 --format onnx": "torch.onnx export: ~15 s even for the tiny model "
    "(tests/export/test_onnx.py)",
    "keyhead predict runs/heatmap_lite0/model.onnx frames/ --runtime onnx --out preds/": "needs the export above "
    "(tests/export/test_onnx.py runs it through the CLI)",
    "light/bin/keyhead predict model.onnx frames/ --runtime onnx --out preds/": "a second, torch-free install",
    "keyhead train face_heatmap data.path=../shared/data/helen-300w-68pt-subset": "real HELEN data from ../shared",
    "keyhead evaluate runs/face_heatmap --data unseen_faces/": "needs runs/face_heatmap (the HELEN line)",
    "keyhead evaluate runs/face_heatmap --data unseen_faces/ --flip": "needs runs/face_heatmap (the HELEN line)",
    "keyhead predict runs/face_heatmap photos/ --flip": "needs runs/face_heatmap (the HELEN line)",
    "keyhead compare face_unet face_heatmap --grid model.loss=heatmap_mse_raw,bce,ce --set data.path=faces/ "
    "--out cmp/": "trains six models (tests/test_compare.py runs compare on tiny settings)",
    "keyhead fomm-train data/videos/synth_vid.mp4 --out runs/fomm_u --minutes 11": "an 11-minute training budget",
    "keyhead fomm-eval runs/fomm_u --labels data/videos/synth_vid_keypoints.csv": "needs runs/fomm_u (fomm-train)",
    "keyhead compress runs/teacher --out runs/light --frames data/videos/synth_vid.mp4": "a 14-minute distillation",
    "keyhead profile runs/light/light": "needs runs/light (compress)",
    "keyhead/": "the package folder in the layout tree, not a command",
    "keyhead synth herd/ --animals 2": "renders 600 frames of two mice (~25 s); tests/topdown/test_topdown.py and "
    "tests/data/test_synth_multi.py generate multi-animal data (the latter through the CLI)",
    "keyhead train topdown_lite0 data.path=herd/": "a 20-minute budget; tests/topdown/test_topdown.py trains this "
    "template through the CLI with tiny settings",
    "keyhead evaluate runs/topdown_lite0": "needs runs/topdown_lite0; tests/topdown/test_topdown.py evaluates its "
    "top-down run through the CLI",
    "keyhead predict runs/topdown_lite0 herd/videos/synth_vid.mp4 --labeled-video": "needs runs/topdown_lite0; "
    "tests/topdown/test_topdown.py predicts a video with --labeled-video through the CLI",
}

COMMANDS = readme_commands(README.read_text(encoding="utf-8")) if README.is_file() else []
DONE: dict[str, str] = {}  # RUN line -> its stdout, once run successfully in this module's sandbox


def norm(line: str) -> str:
    """A command line as ``readme_commands`` spells it (shell quoting normalised, e.g. ``'>'``)."""
    return shlex.join(shlex.split(line))


def line_id(line: str) -> str:
    return str(COMMANDS.index(norm(line))) if norm(line) in COMMANDS else line


def invoke(args: list[str]) -> tuple[int, str, str]:
    """``keyhead ARGS`` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(args)
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 0 if exc.code is None else 1
    return code, out.getvalue(), err.getvalue()


def run_line(line: str, extra: tuple[str, ...] = ()) -> str:
    """Run a README line with ``extra`` appended, in the current folder; ``> FILE`` gets stdout. Returns stdout."""
    tokens = shlex.split(line)
    assert Path(tokens[0]).name == "keyhead", line
    args, redirect = tokens[1:], None
    if ">" in args:
        args, redirect = args[: args.index(">")], args[args.index(">") + 1]
    code, out, err = invoke([*args, *extra])
    last = [x for x in err.splitlines() if x.strip()][-1:] or [""]
    assert code == 0, f"{shlex.join([*tokens, *extra])} exited {code}: {last[0]}"
    if redirect is not None:
        Path(redirect).write_text(out)
    return out


def run_readme(line: str, sandbox: Path) -> None:
    """Run a RUN line after the lines it needs (each at most once), then check what it wrote."""
    for need in NEEDS.get(line, ()):
        if need not in DONE:
            run_readme(need, sandbox)
    extra, check = RUN[line]
    out = run_line(line, extra)
    check(sandbox, out)
    DONE[line] = out


@pytest.fixture(scope="module")
def sandbox(synth: Path, tmp_path_factory) -> Path:
    """A folder holding every name the README's commands use; ``runs/`` trained by the README's own train line."""
    import av
    import torch
    import torchvision

    root = tmp_path_factory.mktemp("readme")
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        shutil.copytree(synth, "data")
        for project in ("path/to/project", "other/project"):
            shutil.copytree("data", project, ignore=shutil.ignore_patterns("videos"))
        pngs = sorted(Path("data/labeled-data").rglob("*.png"))
        Path("frames").mkdir()
        for png in pngs[:3]:
            shutil.copy(png, Path("frames") / png.name)
        shutil.copy(pngs[3], "img.png")
        video = Path("data/videos/synth_vid.mp4")
        for name in ("session1.mp4", "long.mp4", "test_vid.mp4"):
            shutil.copy(video, name)
        with av.open(str(video)) as src, av.open("session2.avi", "w") as dst:  # another container and codec
            stream = dst.add_stream("mjpeg", rate=30)
            stream.width, stream.height, stream.pix_fmt = SIZE, SIZE, "yuvj420p"
            for frame in src.decode(video=0):
                dst.mux(stream.encode(frame.reformat(format="yuvj420p")))
            dst.mux(stream.encode())
        Path("videos").mkdir()  # a folder of videos
        for name in ("session1.mp4", "session2.avi", "long.mp4"):
            shutil.copy(name, Path("videos") / name)
        shutil.copy("data/CollectedData.csv", "CollectedData.csv")  # a Lightning Pose table with its images beside it
        shutil.copy("data/keyhead_synth.yaml", "keyhead_synth.yaml")
        shutil.copytree("data/labeled-data", "labeled-data")
        code, _, err = invoke(["convert", "data/", "dlc-project/", "--to", "dlc-csv"])  # a DeepLabCut project
        assert code == 0, err
        torch.save(torchvision.models.resnet18().state_dict(), "resnet18.pth")  # a (trusted) torchvision pickle
        run_readme(TRAIN, root)  # runs/heatmap_lite0, which most lines read
        for name in ("my_run", "a", "b", "c"):
            shutil.copytree("runs/heatmap_lite0", f"runs/{name}")
    return root


@pytest.fixture
def in_sandbox(sandbox: Path, monkeypatch) -> Path:
    monkeypatch.chdir(sandbox)
    return sandbox


@pytest.mark.parametrize("line", list(RUN), ids=[line_id(c) for c in RUN])
def test_readme_command_runs(line: str, in_sandbox: Path):
    if line in DONE:  # run already for a later line's sake (the fixture trains runs/heatmap_lite0 with TRAIN)
        RUN[line][1](in_sandbox, DONE[line])
    else:
        run_readme(line, in_sandbox)


def test_synth_in_empty_folder(tmp_path: Path, monkeypatch):
    """``keyhead synth data/``, the README's first command, in an empty folder (small sizes appended)."""
    monkeypatch.chdir(tmp_path)
    run_line("keyhead synth data/", ("--n-labeled", "8", "--size", str(SIZE), "--video-frames", "8"))
    assert (tmp_path / "data/CollectedData.csv").is_file()
    assert (tmp_path / "data/videos/synth_vid.mp4").is_file()


def test_every_readme_command_is_run_or_skipped():
    assert COMMANDS, "no keyhead commands found in README.md"
    known = {norm(c) for c in (*RUN, *SKIP)}
    missing = [c for c in COMMANDS if c not in known]
    assert not missing, f"README commands neither run nor skipped (add them to RUN or SKIP): {missing}"
    stale = [c for c in (*RUN, *SKIP) if norm(c) not in COMMANDS]
    assert not stale, f"RUN / SKIP lines no longer in the README: {stale}"
    assert not set(RUN) & set(SKIP)
