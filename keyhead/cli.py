"""The ``keyhead`` command: synth | train | evaluate | predict | models | profile | config | demo."""

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
) -> None:
    """Generate the embedded synthetic dataset (Lightning Pose / DLC layout, with a video)."""
    from keyhead.data.synth import generate

    info = generate(
        out_dir,
        kind=kind,
        n_labeled=n_labeled,
        image_size=(size, size),
        video_frames=video_frames,
        seed=seed,
        overwrite=overwrite,
    )
    typer.echo(f"wrote {info.n_labeled} labelled frames and a {video_frames}-frame video to {info.out_dir}")


@app.command()
def train(
    config: Annotated[Path | None, typer.Argument(help="YAML config (see `keyhead config list`)")] = None,
    overrides: Annotated[list[str] | None, typer.Argument(help="key=value overrides, e.g. train.epochs=5")] = None,
    resume: Annotated[Path | None, typer.Option(help="continue a run folder from its last epoch")] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress", help="no progress bars")] = False,
) -> None:
    """Train a model; writes a run folder with config, split, weights, history, metrics and plots."""
    from keyhead.engine.train import train as run_train

    if config is not None and "=" in str(config) and not config.exists():
        overrides = [str(config), *(overrides or [])]
        config = None
    if resume is None and config is None and not overrides:
        raise KeyheadError("give a config file (keyhead config list) or --resume RUN_DIR")
    run_train(config, overrides or [], resume=resume, progress=not no_progress)


@app.command()
def evaluate(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    data: Annotated[
        Path | None, typer.Option(help="evaluate on other labelled data instead of the run's split")
    ] = None,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Evaluate a run's best weights: metrics.json per split and per keypoint, predictions, plots."""
    from keyhead.evaluate import evaluate_run

    evaluate_run(run_dir, data=data, progress=not no_progress)


@app.command()
def predict(
    run_dir: Annotated[Path, typer.Argument(help="a run folder")],
    inputs: Annotated[list[Path], typer.Argument(help="images or folders of images")],
    out: Annotated[Path | None, typer.Option(help="output folder (default RUN_DIR/predictions)")] = None,
    threshold: Annotated[float, typer.Option(help="confidence below which points are drawn hollow")] = 0.5,
    no_overlays: Annotated[bool, typer.Option("--no-overlays")] = False,
    batch_size: Annotated[int, typer.Option()] = 16,
    no_progress: Annotated[bool, typer.Option("--no-progress")] = False,
) -> None:
    """Predict keypoints: a DLC-format CSV (x, y, likelihood) and overlay images (prediction red, truth green)."""
    from keyhead.predict import predict_images

    predict_images(run_dir, inputs, out, not no_overlays, threshold, batch_size, not no_progress)


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

    from keyhead.profile import parse_size, profile_model, resolve_model

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
    import keyhead.backbones
    import keyhead.decoders
    import keyhead.heads
    import keyhead.losses  # noqa: F401


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors become one line on stderr and exit status 2 (``--debug`` shows tracebacks)."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("KEYHEAD_DEBUG") == "1"
    args = [a for a in args if a != "--debug"]
    try:
        app(args, prog_name="keyhead", standalone_mode=False)
    except KeyheadError as exc:
        if debug:
            raise
        typer.echo(f"keyhead: error: {exc}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        typer.echo("keyhead: interrupted", err=True)
        sys.exit(130)
    except Exception as exc:  # click's own usage errors and anything unexpected
        import click

        if isinstance(exc, click.exceptions.Exit):
            sys.exit(exc.exit_code)
        if isinstance(exc, click.ClickException):
            exc.show()
            sys.exit(exc.exit_code)
        if isinstance(exc, click.exceptions.Abort):
            sys.exit(130)
        if debug:
            raise
        typer.echo(
            f"keyhead: internal error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True
        )
        sys.exit(1)


if __name__ == "__main__":
    main()
