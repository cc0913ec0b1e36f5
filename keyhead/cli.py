"""The ``keyhead`` command: synth | train | evaluate | predict | compare | models | profile | config | demo | fomm-*."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from keyhead.errors import KeyheadError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="keyhead: train, evaluate and run keypoint detectors (backbone + head + decoder) on CPU or GPU.",
    pretty_exceptions_enable=False,
)


@app.command()
def synth(
    out_dir: Annotated[Path, typer.Argument(help="folder to write the dataset to")],
    kind: Annotated[str, typer.Option(help="animal or face")] = "animal",
    n_labeled: Annotated[int, typer.Option(help="labelled frames")] = 200,
    size: Annotated[int, typer.Option(help="image side in pixels")] = 256,
    video_frames: Annotated[int, typer.Option(help="frames of the video")] = 600,
    seed: Annotated[int, typer.Option()] = 0,
    overwrite: Annotated[bool, typer.Option(help="replace an earlier synth dataset in OUT_DIR")] = False,
    animals: Annotated[int, typer.Option(help="mice in the arena; 2+ writes multi-animal DLC tables")] = 1,
) -> None:
    """Generate the embedded synthetic dataset (Lightning Pose / DLC layout, with a video)."""
    from keyhead.data.synth import generate

    opts = dict(kind=kind, n_labeled=n_labeled, image_size=(size, size), video_frames=video_frames, seed=seed)
    info = generate(out_dir, **opts, overwrite=overwrite, animals=animals)
    typer.echo(f"wrote {info.n_labeled} labelled frames and a {video_frames}-frame video to {info.out_dir}")


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config (see `keyhead config list`)")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. train.epochs=5")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue a run folder from its last epoch")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bars")] = False,
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="read a trusted pickle model.pretrained file (weights_only)")
    ] = False,
) -> None:
    """Train a model; writes a run folder with config, split, weights, history, metrics and plots."""
    from keyhead.topdown import train_any as run_train

    if config is not None and "=" in str(config) and not config.exists():
        overrides = [str(config), *(overrides or [])]
        config = None
    if trust_pickle:
        overrides = [*(overrides or []), "model.trust_pickle=true"]
    if resume is None and config is None and not overrides:
        raise KeyheadError("give a config file (keyhead config list) or --resume RUN_DIR")
    run_train(config, overrides or [], resume=resume, progress=not no_progress)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run folder (with --cv also a config file or template name)")],
    data: Annotated[
        Path | None, typer.Option(help="evaluate on other labelled data instead of the run's split")
    ] = None,
    flip: Annotated[
        bool, typer.Option("--flip", help="flip test-time augmentation (results in an eval-...-flip folder)")
    ] = False,
    decoder: Annotated[
        str | None,
        typer.Option(help="decode with another heatmap decoder, no retraining (results in eval-decoder-NAME)"),
    ] = None,
    cv: Annotated[int | None, typer.Option(help="K-fold cross-validation: K runs, each frame tested once")] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="with --cv: key=value config override")] = None,
    out: Annotated[Path | None, typer.Option(help="with --cv: folder (default OUTPUT_DIR/NAME-cvK)")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Evaluate a run's best weights (metrics.json per split and keypoint, predictions, plots), or --cv K."""
    if cv is not None:
        from keyhead.crossval import cross_validate

        if decoder:
            raise KeyheadError(f"--cv trains the config: choose its decoder with --set model.decoder={decoder}")
        if flip or data is not None:
            raise KeyheadError(f"{'--flip' if flip else '--data'} evaluates one run; use it without --cv")

        cross_validate(run_dir, cv, set_, out, progress=not no_progress)
        return
    if set_ or out:
        raise KeyheadError("--set and --out go with --cv K (cross-validation); evaluate a run without them")
    from keyhead.topdown import evaluate_any as evaluate_run

    evaluate_run(run_dir, data=data, progress=not no_progress, flip=flip, decoder=decoder)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    inputs: Annotated[list[Path], typer.Argument(help="images, videos (any codec), or folders of them")],
    out: Annotated[Path | None, typer.Option(help="output folder (default RUN_DIR/predictions)")] = None,
    threshold: Annotated[float, typer.Option(help="confidence below which points are drawn hollow")] = 0.5,
    no_overlays: Annotated[bool, typer.Option("--no-overlays")] = False,
    batch_size: Annotated[int, typer.Option()] = 16,
    flip: Annotated[bool, typer.Option("--flip", help="average with the prediction on the mirrored image")] = False,
    runtime: Annotated[
        str,
        typer.Option(
            help="videos: torch (eager), onnx (onnxruntime; graphs exported once to RUN_DIR/video_onnx, later runs "
            "start without torch), openvino (the same graphs in OpenVINO), onnx-int8 (int8, calibrated on the run's "
            "frames; see keyhead export --format onnx-int8), compile (torch.compile) or torch-bf16 (bfloat16)"
        ),
    ] = "torch",
    labeled_video: Annotated[bool, typer.Option("--labeled-video", help="videos: also write a labelled MP4")] = False,
    restart: Annotated[bool, typer.Option("--restart", help="videos: start over instead of resuming")] = False,
    max_frames: Annotated[int | None, typer.Option(help="videos: predict only the first N frames")] = None,
    jobs: Annotated[
        int, typer.Option(help="videos: N at once with one model (helps when decoding/writing leaves cores idle)")
    ] = 1,
    shard: Annotated[
        str | None, typer.Option(help="videos: I/N, every Nth by name from the I-th (a job array's task I of N)")
    ] = None,
    ensemble: Annotated[
        list[Path] | None, typer.Option(help="another run folder whose predictions are combined (repeatable)")
    ] = None,
    combine: Annotated[str, typer.Option(help="with --ensemble: median or mean of the members' (x, y)")] = "median",
    device: Annotated[str, typer.Option(help="torch runtimes: auto (a GPU if there is one), cpu, cuda, mps")] = "auto",
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Predict keypoints on images (CSV + overlays, prediction red, truth green) or videos (CSV per video, streamed).

    RUN_DIR may be a ``.onnx`` file from ``keyhead export``; with ``--runtime onnx`` images are predicted by
    onnxruntime alone (torch is not imported). ``--ensemble`` predicts with several runs and combines them.

    A video gives ``<stem>.csv`` (DLC format: x, y, likelihood per keypoint, one row per frame), ``<stem>_video.json``
    (temporal norm, confidence, frames/s) and with --labeled-video an MP4 with the points drawn; an interrupted
    video prediction resumes where it stopped. A folder's videos are all predicted, sorted by name.
    """
    from keyhead.inference.parallel import plan_inputs
    from keyhead.io.rundir import is_topdown_run  # torch-free and light: the ONNX path's start-up

    images, videos, at = plan_inputs(inputs, jobs, shard, runtime)
    if images and runtime in ("openvino", "onnx-int8"):
        raise KeyheadError(f"--runtime {runtime} is for videos; predict images with --runtime torch or onnx")
    if (jobs != 1 or at) and (ensemble or run_dir.suffix.lower() == ".onnx" or is_topdown_run(run_dir)):
        raise KeyheadError("--jobs and --shard are for one run folder's videos; leave them out here")
    if is_topdown_run(run_dir):  # several animals: tracked videos, multi-animal image tables
        if flip or ensemble or runtime != "torch":
            raise KeyheadError("--flip, --ensemble and --runtime: not for multi-animal runs yet; predict without them")
        from keyhead.topdown import predict_topdown

        args = (batch_size, labeled_video, threshold, not restart, max_frames, not no_progress, not no_overlays)
        return predict_topdown(run_dir, images, videos, out, *args)
    if ensemble or run_dir.suffix.lower() == ".onnx" or (runtime == "onnx" and not videos):
        video_only = {"--max-frames": max_frames is not None, "--labeled-video": labeled_video, "--flip": flip}
        given = [name for name, on in video_only.items() if on]
        if given:
            mode = "--ensemble" if ensemble else "an ONNX model on images"
            raise KeyheadError(f"{given[0]}: not supported with {mode} yet; leave it out or predict with one run")
        from keyhead.inference.ensembles import predict_light_or_ensemble

        return predict_light_or_ensemble(
            run_dir, images, videos, out, runtime, ensemble, combine, no_overlays, threshold, batch_size, no_progress
        )
    if videos:
        from keyhead.inference.video import predict_videos

        if flip:
            raise KeyheadError("--flip is for images; video prediction does not support it yet")
        args = (batch_size, runtime, labeled_video, threshold, not restart, max_frames, not no_progress, jobs, at)
        for res in predict_videos(run_dir, videos, out, *args, device=device):
            typer.echo(
                f"{res.csv}: {res.n_frames} frames, {res.frames_per_second:.1f} frames/s, "
                f"temporal norm {res.summary_data['temporal_norm_px']:.2f} px"
                + (f"; labelled video {res.labeled}" if res.labeled else "")
            )
    if images:
        from keyhead.inference.images import predict_images

        predict_images(run_dir, images, out, not no_overlays, threshold, batch_size, not no_progress, flip, device)


@app.command()
def export(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    fmt: Annotated[
        str, typer.Option("--format", help="onnx (model + decoder, dynamic batch) or onnx-int8 (video graphs)")
    ] = "onnx",
    out: Annotated[Path | None, typer.Option(help="the .onnx file (default RUN_DIR/model.onnx)")] = None,
    opset: Annotated[int, typer.Option(help="ONNX opset version")] = 18,
    int8_tolerance: Annotated[float, typer.Option(help="onnx-int8: largest mean px deviation from float32")] = 2.0,
) -> None:
    """Export a run's model with its decoder: keypoints (B, K, 2) in input pixels + confidence (B, K), and a sidecar;
    ``--format onnx-int8`` quantizes the run's video graphs on its labelled frames (``--runtime onnx-int8``)."""
    if fmt == "onnx-int8":
        from keyhead.export.quantize import quantize_run

        quantize_run(run_dir, int8_tolerance)
        return typer.echo(f"predict with: keyhead predict {run_dir} VIDEO --runtime onnx-int8")
    if fmt != "onnx":
        raise KeyheadError(f"--format {fmt!r}: choose onnx or onnx-int8")
    from keyhead.export.onnx import TOLERANCE_PX, export_onnx, sidecar_path

    path = export_onnx(run_dir, out, opset=opset)
    typer.echo(
        f"wrote {path} and {sidecar_path(path)} (matches PyTorch within {TOLERANCE_PX} px); "
        f"predict with: keyhead predict {path} IMAGES --runtime onnx"
    )


@app.command()
def convert(
    src: Annotated[
        Path, typer.Argument(help="labels: DLC project / CSV / H5, Lightning Pose folder, COCO JSON, .slp, .pts folder")
    ],
    out: Annotated[Path, typer.Argument(help="a .csv, .h5, .json or .slp file, or a folder (DLC project, LP, .pts)")],
    to: Annotated[
        str | None,
        typer.Option(
            help="dlc-csv, dlc-h5, lp-csv, coco, pts, slp; predictions: slp, nwb, analysis-h5 (default: OUT's suffix)"
        ),
    ] = None,
    scorer: Annotated[str | None, typer.Option(help="DeepLabCut scorer (default: the source's, else keyhead)")] = None,
    video: Annotated[
        Path | None, typer.Option(help="predictions: the predicted video (default: from <stem>_video.json)")
    ] = None,
    skeleton: Annotated[
        Path | None, typer.Option(help="predictions: a run folder whose skeleton.json gives the edges")
    ] = None,
) -> None:
    """Convert labels between formats, keeping keypoint names, skeleton, identities and missing points (copying images).

    A prediction table of ``keyhead predict`` (x, y, likelihood columns) converts to SLEAP (``NAME.slp``,
    ``NAME.analysis.h5``) or NWB (``NAME.nwb``, ndx-pose) through sleap-io.
    """
    from keyhead.io.predictions import is_prediction_table

    if is_prediction_table(src):
        from keyhead.io.interop import save_predictions
        from keyhead.io.rundir import read_skeleton

        edges = read_skeleton(skeleton) if skeleton is not None else None
        typer.echo(f"wrote {save_predictions(src, out, to, video, edges)}")
        return
    from keyhead.data.formats.convert import convert_labels

    typer.echo(f"wrote {convert_labels(src, out, to, scorer)}")


@app.command()
def smooth(
    csv_path: Annotated[Path, typer.Argument(help="a video prediction CSV (DLC format, one row per frame)")],
    out: Annotated[Path | None, typer.Option(help="the smoothed CSV (default <stem>_smoothed.csv)")] = None,
    method: Annotated[str, typer.Option(help="kalman (Kalman + RTS smoother) or savgol (weighted Savitzky-Golay)")] = (
        "kalman"
    ),
    min_confidence: Annotated[float, typer.Option(help="points below this confidence are interpolated")] = 0.5,
    window: Annotated[int, typer.Option(help="savgol: frames per local fit (odd)")] = 9,
    order: Annotated[int, typer.Option(help="savgol: polynomial order")] = 2,
    process_noise: Annotated[float, typer.Option(help="kalman: px/frame^2 a point may accelerate")] = 0.5,
    measurement_noise: Annotated[
        float | None, typer.Option(help="kalman: px noise of a confident point (default: estimated)")
    ] = None,
) -> None:
    """Smooth keypoint tracks over time, trusting each point as much as its confidence (no torch needed)."""
    from keyhead.inference.smoothing import smooth_predictions

    kwargs: dict = (
        {"window": window, "order": order}
        if method == "savgol"
        else {"process_noise": process_noise, "measurement_noise": measurement_noise}
    )
    typer.echo(f"wrote {smooth_predictions(csv_path, out, method, min_confidence, **kwargs)}")


@app.command()
def report(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    out: Annotated[Path | None, typer.Option(help="the HTML file (default RUN_DIR/report.html)")] = None,
    video_predictions: Annotated[
        list[Path] | None, typer.Option(help="a video prediction CSV to trace (repeatable; predictions/ is searched)")
    ] = None,
) -> None:
    """Write one self-contained HTML page: metrics, curves, overlays, heatmaps, reliability, video traces, config."""
    from keyhead.report.html import write_report
    from keyhead.topdown import is_topdown_run

    if is_topdown_run(run_dir):
        from keyhead.topdown.report import write_topdown_report as write_report  # noqa: F811
    typer.echo(f"wrote {write_report(run_dir, out, video_predictions)}")


@app.command()
def compare(
    configs: Annotated[list[str], typer.Argument(help="config files or template names (keyhead config list)")],
    grid: Annotated[
        list[str] | None, typer.Option("--grid", help="key=v1,v2: one model per value (repeat for a product)")
    ] = None,
    set_: Annotated[list[str] | None, typer.Option("--set", help="key=value for every model (repeatable)")] = None,
    out: Annotated[Path, typer.Option(help="compare folder (runs in OUT/runs/<name>)")] = Path("compare"),
    split_file: Annotated[Path | None, typer.Option(help="a split.json to use (default: made once in OUT)")] = None,
    flip: Annotated[bool, typer.Option("--flip", help="also evaluate each model with flip TTA")] = False,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Train several configs (or a grid) on one split; a comparison table (Markdown + CSV) and figures."""
    from keyhead.compare import compare as run_compare

    run_compare(configs, grid, set_, out, split_file, flip=flip, progress=not no_progress)


@app.command()
def models() -> None:
    """List the registered backbones, heads, decoders and losses."""
    from keyhead.registry import BACKBONES, DECODERS, HEADS, LOSSES

    import_all()
    typer.echo("backbones: " + ", ".join(BACKBONES.names()) + " (and any timm model name, e.g. resnet18, resnet50)")
    typer.echo("heads:     " + ", ".join(HEADS.names()))
    typer.echo("decoders:  " + ", ".join(DECODERS.names()))
    typer.echo("losses:    " + ", ".join(LOSSES.names()))


@app.command()
def profile(
    model: Annotated[str, typer.Argument(help="run folder, config file, template (fomm_kp) or backbone name")],
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value config overrides")] = None,
    repeats: Annotated[int, typer.Option(help="timed passes")] = 20,
    warmup: Annotated[int, typer.Option(help="untimed passes first")] = 5,
    batch_size: Annotated[int, typer.Option(help="images per pass")] = 1,
    input_size: Annotated[str | None, typer.Option(help="N or HxW (default: the model's input size)")] = None,
    num_keypoints: Annotated[int | None, typer.Option(help="K for configs without keypoint names")] = None,
    device: Annotated[str, typer.Option(help="cpu or cuda")] = "cpu",
    threads: Annotated[int | None, typer.Option(help="torch CPU threads (default: torch's)")] = None,
    out: Annotated[Path | None, typer.Option(help="write profile.md, profile.json and profile.png here")] = None,
) -> None:
    """Time every module (mean, std), with shapes, parameters and FLOPs per stage and block; Markdown tables."""
    import torch

    from keyhead.evaluation.profiling import parse_size, profile_model, resolve_model

    if threads is not None:
        torch.set_num_threads(threads)
    net, description = resolve_model(model, overrides or [], num_keypoints)
    result = profile_model(
        net,
        name=description,
        input_size=parse_size(input_size),
        batch_size=batch_size,
        repeats=repeats,
        warmup=warmup,
        device=device,
    )
    typer.echo(result.to_markdown(), nl=False)
    if out is not None:
        paths = result.save(out)
        typer.echo(f"wrote {', '.join(str(p) for p in paths)}")


@app.command("fomm-train")
def fomm_train(
    video: Annotated[Path | None, typer.Argument(help="a video file or a folder of frames (not with --resume)")] = None,
    out: Annotated[Path, typer.Option(help="run folder to write")] = Path("runs/fomm_unsupervised"),
    resume: Annotated[bool, typer.Option("--resume", help="continue the run in --out from its last save")] = False,
    steps: Annotated[int, typer.Option(help="optimiser steps in all")] = 2000,
    minutes: Annotated[float | None, typer.Option(help="wall-clock budget; stops cleanly when spent")] = None,
    input_size: Annotated[int, typer.Option(help="detector input side (multiple of 32)")] = 128,
    num_kp: Annotated[int, typer.Option(help="keypoints K")] = 10,
    block_expansion: Annotated[int, typer.Option(help="hourglass width (vox-256: 32)")] = 32,
    max_features: Annotated[int, typer.Option(help="hourglass channel cap (vox-256: 1024)")] = 256,
    num_blocks: Annotated[int, typer.Option(help="hourglass depth (vox-256: 5)")] = 4,
    scale_factor: Annotated[float, typer.Option(help="anti-alias downsampling before the hourglass")] = 0.25,
    generator_size: Annotated[int, typer.Option(help="side of the generator's reconstruction")] = 64,
    batch_size: Annotated[int, typer.Option()] = 8,
    lr: Annotated[float, typer.Option(help="Adam learning rate (FOMM: 2e-4)")] = 5e-4,
    max_frames: Annotated[int | None, typer.Option(help="use at most this many frames, evenly spaced")] = None,
    seed: Annotated[int, typer.Option()] = 0,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Train FOMM's keypoint detector without labels on one video (equivariance + reconstruction)."""
    from pydantic import ValidationError

    from keyhead.fomm.unsupervised.train import UnsupervisedConfig, train_unsupervised

    cfg = None
    if video is not None:
        try:
            cfg = UnsupervisedConfig(
                video=str(video),
                input_size=(input_size, input_size),
                num_kp=num_kp,
                block_expansion=block_expansion,
                max_features=max_features,
                num_blocks=num_blocks,
                scale_factor=scale_factor,
                generator_size=generator_size,
                batch_size=batch_size,
                steps=steps,
                max_minutes=minutes,
                lr=lr,
                max_frames=max_frames,
                seed=seed,
            )
        except ValidationError as exc:
            e = exc.errors()[0]
            raise KeyheadError(f"fomm-train --{str(e['loc'][0]).replace('_', '-')}: {e['msg']}") from None
    elif not resume:
        raise KeyheadError("fomm-train needs a VIDEO (file or folder of frames), or --resume with --out RUN")
    elif steps != 2000 or minutes is not None:
        from keyhead.fomm.unsupervised.train import _load_cfg

        cfg = _load_cfg(out / "fomm_train.yaml") if (out / "fomm_train.yaml").is_file() else None
        if cfg is not None:
            cfg = cfg.model_copy(update={"steps": steps, "max_minutes": minutes})
    run = train_unsupervised(cfg, out, resume=resume, progress=not no_progress)
    typer.echo(f"wrote {run} (detector: model.safetensors + config.yaml; generator.safetensors)")


@app.command("fomm-eval")
def fomm_eval(
    run_dir: Annotated[Path, typer.Argument(help="an unsupervised run folder (keyhead fomm-train)")],
    labels: Annotated[Path, typer.Option(help="keypoints CSV of the video's frames, or a labelled project")],
    video: Annotated[Path | None, typer.Option(help="video of the CSV's frame numbers (default: the run's)")] = None,
    jacobians: Annotated[bool, typer.Option("--jacobians", help="regress from Jacobians too")] = False,
    no_baseline: Annotated[bool, typer.Option("--no-baseline", help="skip the random-init baseline")] = False,
    out: Annotated[Path | None, typer.Option(help="JSON to write (default RUN/landmark_eval.json)")] = None,
) -> None:
    """Linear-regression landmark error of discovered keypoints on held-out frames, next to random init."""
    from keyhead.fomm.unsupervised.evaluate import evaluate_unsupervised

    result = evaluate_unsupervised(run_dir, labels, video, jacobians, not no_baseline, out)
    for name in ("trained", "random_init"):
        if name in result:
            r = result[name]
            typer.echo(
                f"{name:12s} held-out pixel error {r['pixel_error']:.2f} px, NME {r['nme']:.2f} % "
                f"({r['normalizer']}), train {r['train_pixel_error']:.2f} px, {r['n_train']}/{r['n_test']} frames"
            )


@app.command()
def compress(
    model: Annotated[Path, typer.Argument(help="a trained FOMM run folder (fomm-train, or train with fomm_kp)")],
    out: Annotated[Path, typer.Option(help="folder for the light model and the report")] = Path("runs/compressed"),
    frames: Annotated[
        Path | None, typer.Option(help="unlabelled video or frame folder to distil on (default: the run's data)")
    ] = None,
    block_expansion: Annotated[int, typer.Option(help="student hourglass width")] = 16,
    max_features: Annotated[int, typer.Option(help="student hourglass channel cap")] = 128,
    init: Annotated[
        str, typer.Option(help="student's first weights: teacher (its strongest channels) or random")
    ] = "teacher",
    separable: Annotated[
        bool,
        typer.Option("--separable/--full", help="depthwise-separable hourglass 3x3 convolutions (needs --init random)"),
    ] = False,
    distill_steps: Annotated[int, typer.Option(help="most distillation steps (--minutes usually ends it)")] = 100_000,
    minutes: Annotated[float | None, typer.Option(help="distillation wall-clock budget")] = 14.0,
    max_frames: Annotated[int, typer.Option(help="frames used (evenly spaced); a quarter are held out")] = 600,
    augment_copies: Annotated[int, typer.Option(help="TPS-warped copies per distillation frame")] = 2,
    occlusion_copies: Annotated[int, typer.Option(help="occluded copies per (warped) distillation frame")] = 1,
    separable_head: Annotated[
        str, typer.Option(help="depthwise-separable 7x7 head convolutions: all, jacobian or none")
    ] = "jacobian",
    repeats: Annotated[int, typer.Option(help="timed passes per latency")] = 30,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Make a FOMM detector light (width, depthwise-separable, distillation, int8, ONNX) and report each step."""
    from keyhead.fomm.compress import CompressSettings, compress_detector

    settings = CompressSettings(
        block_expansion=block_expansion,
        max_features=max_features,
        distill_steps=distill_steps,
        max_minutes=minutes,
        max_frames=max_frames,
        augment_copies=augment_copies,
        occlusion_copies=occlusion_copies,
        init=init,
        separable=separable,
        separable_head=separable_head,
        repeats=repeats,
    )
    report = compress_detector(model, out, frames=frames, settings=settings, progress=not no_progress)
    typer.echo(report.to_markdown(), nl=False)
    typer.echo(f"wrote {out}")


@app.command("convert-weights")
def convert_weights(
    src: Annotated[Path, typer.Argument(help="a torch.save checkpoint (.pt, .pth, .ckpt, .pth.tar)")],
    dst: Annotated[Path, typer.Argument(help="the .safetensors file to write")],
    trust_pickle: Annotated[
        bool, typer.Option("--trust-pickle", help="I trust SRC: read it (with torch.load(weights_only=True))")
    ] = False,
) -> None:
    """Convert a pickle checkpoint you trust into safetensors once (then use it as model.pretrained)."""
    from keyhead.models.weights import convert_weights as run_convert

    if dst.suffix != ".safetensors":
        raise KeyheadError(f"{dst}: the output must be a .safetensors file")
    n = run_convert(src, dst, trusted=trust_pickle)
    typer.echo(f"wrote {n} tensors to {dst}")


config_app = typer.Typer(help="Config templates shipped with keyhead.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@config_app.command("list")
def config_list() -> None:
    """List the config templates."""
    from keyhead.config import template_dir

    for p in sorted(template_dir().glob("*.yaml")):
        first = p.read_text().splitlines()[0].lstrip("# ")
        typer.echo(f"{p.stem:24s} {first}")


@config_app.command("show")
def config_show(name: Annotated[str, typer.Argument(help="template name")]) -> None:
    """Print a template (redirect it to a file to start your own config)."""
    from keyhead.config import template_dir

    path = template_dir() / f"{name}.yaml"
    if not path.is_file():
        names = ", ".join(p.stem for p in sorted(template_dir().glob("*.yaml")))
        raise KeyheadError(f"no config template {name!r}; templates: {names}")
    typer.echo(path.read_text(), nl=False)


@app.command()
def demo(
    out: Annotated[Path, typer.Option(help="folder for the synthetic data and the run")] = Path("demo"),
    minutes: Annotated[float, typer.Option(help="training budget in minutes")] = 4.0,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Synthesise data, train, evaluate, predict and plot: keyhead's main job on its embedded default."""
    from keyhead.demo import run_demo

    run_demo(out, minutes, progress=not no_progress)


def import_all() -> None:
    """Import every module that registers components."""
    import keyhead.models.backbones
    import keyhead.models.decoders
    import keyhead.models.heads
    import keyhead.models.losses  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2 (``--debug`` shows tracebacks)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("KEYHEAD_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        code = app(args, prog_name="keyhead", standalone_mode=False)
        if isinstance(code, int) and code:  # typer turns Ctrl-C into exit status 130 and returns it
            if code == 130:
                typer.echo("keyhead: interrupted", err=True)
            sys.exit(code)
    except KeyheadError as exc:
        if debug:
            raise
        typer.echo(f"keyhead: error: {' '.join(str(exc).split())}", err=True)  # always one line
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("keyhead: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # usage errors of typer's (vendored) click and anything unexpected
        if isinstance(exc, typer.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, typer.TyperException):  # UsageError, NoSuchOption, MissingParameter, ...
            show = getattr(exc, "show", None)
            if callable(show):
                show()
            else:
                typer.echo(f"keyhead: error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        if isinstance(exc, typer.Abort):
            sys.exit(130)
        if debug:
            raise
        typer.echo(
            f"keyhead: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
