"""Accuracy benchmark (issue 16): every dataset trained from a shipped template, within 20 minutes on this CPU.

Each row is `keyhead train TEMPLATE data.path=... train.max_minutes=M` on the data folder as it is (the real
trainer, evaluation and confidence calibration), then the run's test metrics:

- ``mirror_mouse``: ``heatmap_efficientnet_lite0`` on Lightning Pose's mirror-mouse frames, over three 80/10/10
  splits (``data.split_seed`` 42, 43, 44): mean and spread of the test pixel error (9 test frames a split).
- ``openfield``: the same template on DeepLabCut's openfield project.
- ``reaching`` / ``reaching_baseline``: the same template on DeepLabCut's Reaching project (mixed image sizes,
  missing labels), beside a plain heatmap baseline: the same backbone and head trained without augmentation and
  decoded by a plain argmax (``augment.enabled=false model.decoder=argmax``), i.e. what keyhead's defaults add.
- ``helen``: ``face_dynamic`` on the fixed HELEN split (``bench/results/helen_split.json``, the face benchmark's),
  cropped to the landmarks' box with a 25 % margin, NME (inter-ocular) without flip test-time augmentation.

Every row trains the template as shipped: the heatmap template's MultiStepLR milestones lie beyond what a
budget-limited run reaches, so its rate is constant (``train.schedule=cosine`` was measured worse there on
2026-12-06); ``face_dynamic`` anneals with the cosine over the budget (measured better on HELEN): README, Benchmarks.

Every row records the test pixel error (mean, median), NME, the confidence AUROC (a keypoint is bad when its error
exceeds 5 % of the normaliser; keyhead's calibrated confidence, with the raw one beside it), the ECE, epochs and
wall time, and whether the issue's target is met. Finished runs are reused when their config equals the one the
bench would train (an interrupted benchmark continues); a run whose config differs only in settings that leave its
weights as they are (``train.calibration``, fitted after training; a heatmap decoder with the same positions, e.g.
``entropy_maxima`` for ``subpixel_maxima``) is re-evaluated with the template's (``keyhead evaluate``), not trained
again; ``--fresh`` trains them again.

Writes bench/results/accuracy.json (one section per part, merged) and bench/results/accuracy.md (the table).

Usage:
    flock /tmp/keyhead-heavy.lock .venv/bin/python bench/accuracy.py                 # every row (~2 h)
    .venv/bin/python bench/accuracy.py --parts reaching_baseline reaching --minutes 5
    .venv/bin/python bench/accuracy.py --parts openfield --minutes 17
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

from _common import write_section

from keyhead.crossval import spread

HERE = Path(__file__).resolve().parent
SHARED = Path(os.environ.get("KEYHEAD_SHARED_DATA", HERE.parent.parent / "shared" / "data"))
RESULTS = HERE / "results" / "accuracy.json"
RUNS = HERE / "runs" / "accuracy"
HEATMAP = "heatmap_efficientnet_lite0"
BASELINE = ["augment.enabled=false", "model.decoder=argmax"]  # a plain heatmap model: no augmentation, argmax
HELEN = ["data.crop=landmarks", "data.crop_margin=0.25", f"data.split_file={HERE / 'results' / 'helen_split.json'}"]

# part -> (data folder, template, overrides, split seeds, target on the test pixel error or NME, AUROC target)
PARTS: dict[str, dict] = {
    "mirror_mouse": {"data": "lightning-pose-mirror-mouse-example", "seeds": [42, 43, 44], "target_px": 5.0},
    "openfield": {"data": "dlc-openfield-Pranav-2018-10-30", "target_px": 2.0},
    "reaching": {"data": "dlc-Reaching-Mackenzie-2018-08-30", "beat": "reaching_baseline"},
    "reaching_baseline": {"data": "dlc-Reaching-Mackenzie-2018-08-30", "overrides": BASELINE},
    "helen": {
        "data": "helen-300w-68pt-subset/helen/trainset",
        "template": "face_dynamic",
        "overrides": HELEN,
        "target_nme": 4.0,
    },
}
AUROC_TARGET = 0.85


def _config(template: str | Path, overrides: list[str]):
    from keyhead.config import load_config, template_dir

    path = template if isinstance(template, Path) else template_dir() / f"{template}.yaml"
    return load_config(path, overrides)


def _same_weights(run_cfg, cfg):
    """``run_cfg`` with the settings of ``cfg`` that do not change a run's weights: ``train.calibration`` (fitted
    after training) and, on a heatmap head, a decoder with the same positions (``Decoder.positions_of``: checkpoint
    selection saw the same validation errors; only the confidence differs)."""
    from keyhead.registry import DECODERS

    def positions(name: str | None) -> str:
        name = name or "subpixel_maxima"  # the heatmap head's own choice
        return DECODERS.get(name).positions_of or name

    model = run_cfg.model
    if (
        model.head == cfg.model.head == "heatmap"
        and positions(model.decoder) == positions(cfg.model.decoder)
        and model.decoder_kwargs == cfg.model.decoder_kwargs
    ):
        model = model.model_copy(update={"decoder": cfg.model.decoder})
    train = run_cfg.train.model_copy(update={"calibration": cfg.train.calibration})
    return run_cfg.model_copy(update={"model": model, "train": train})


def train_one(name: str, template: str, overrides: list[str], fresh: bool) -> tuple[Path, float | None]:
    """Train one run (or reuse a finished one with the same config); returns its folder and training wall time."""
    from keyhead.engine.train import train

    cfg = _config(template, [f"output_dir={RUNS}", f"name={name}", *overrides])
    run = RUNS / name
    finished = not fresh and (run / "metrics.json").is_file() and (run / "config.yaml").is_file()
    if finished:
        if _config(run / "config.yaml", []).model_dump() == cfg.model_dump():
            print(f"[bench] {name}: reusing the finished run {run}", flush=True)
            return run, None
        recal = _same_weights(_config(run / "config.yaml", []), cfg)
        if recal.model_dump() == cfg.model_dump():
            from keyhead.config import save_config
            from keyhead.evaluation.evaluate import evaluate_run

            print(f"[bench] {name}: re-evaluating {run} with the template's calibration and decoder", flush=True)
            save_config(recal, run / "config.yaml")
            (run / "calibration.json").unlink(missing_ok=True)
            evaluate_run(run, progress=False)
            return run, None
        sys.exit(f"[bench] {run} was trained with another config; move it away or pass --fresh to train it again")
    shutil.rmtree(run, ignore_errors=True)
    t0 = time.perf_counter()
    train(cfg, progress=False)
    return run, round(time.perf_counter() - t0, 1)


def run_row(run: Path, wall_s: float | None) -> dict:
    """The row of one finished run: its test metrics, epochs and settings."""
    metrics = json.loads((run / "metrics.json").read_text())["splits"]
    test = metrics["test"]
    history = (run / "history.csv").read_text().splitlines()
    raw = test.get("raw_confidence", {})
    return {
        "run": str(run.relative_to(HERE.parent)),
        "epochs_trained": len(history) - 1,
        "train_wall_s": wall_s,
        "test_frames": test.get("n_frames"),
        "test_pixel_error": test["pixel_error"],
        "test_median_px": test.get("median_px"),
        "test_nme": test.get("nme"),
        "test_confidence_auroc": test.get("confidence_auroc"),
        "test_confidence_auroc_raw": raw.get("confidence_auroc"),
        "test_ece": test.get("reliability", {}).get("ece"),
        "val_pixel_error": metrics.get("val", {}).get("pixel_error"),
        "train_pixel_error": metrics["train"]["pixel_error"],
    }


def decoder_rows(runs: list[Path], decoder: str) -> list[dict]:
    """Each run's test metrics decoded by another heatmap decoder (`keyhead evaluate RUN --decoder NAME`)."""
    from keyhead.evaluation.evaluate import evaluate_run

    rows = []
    for run in runs:
        test = evaluate_run(run, decoder=decoder, progress=False)["splits"]["test"]
        rows.append(
            {
                "run": str((run / f"eval-decoder-{decoder}").relative_to(HERE.parent)),
                "test_pixel_error": test["pixel_error"],
                "test_nme": test.get("nme"),
                "test_confidence_auroc": test.get("confidence_auroc"),
            }
        )
    return rows


def bench_part(part: str, minutes: float, fresh: bool, decoders: list[str] | None = None) -> dict | None:
    spec = PARTS[part]
    data = SHARED / spec["data"]
    if not data.exists():
        print(f"[bench] {data} not found; skipping {part}")
        return None
    template = spec.get("template", HEATMAP)
    common = [f"data.path={data}", f"train.max_minutes={minutes}", *spec.get("overrides", [])]
    seeds = spec.get("seeds")
    rows, runs = [], []
    for seed in seeds or [None]:
        name = part if seed is None else f"{part}_split{seed}"
        overrides = common if seed is None else [*common, f"data.split_seed={seed}"]
        print(f"[bench] {name}: {template} {' '.join(overrides)}", flush=True)
        run, wall = train_one(name, template, overrides, fresh)
        runs.append(run)
        rows.append({"split_seed": seed, **run_row(run, wall)} if seed is not None else run_row(run, wall))
    cfg = _config(template, [f"name={part}", *common])
    payload: dict = {
        "data": spec["data"],
        "template": template,
        "overrides": spec.get("overrides", []),
        "train_budget_min": minutes,
        "settings": cfg.model_dump(mode="json"),
        "runs": rows,
    }
    for key in ("test_pixel_error", "test_nme", "test_confidence_auroc", "test_confidence_auroc_raw"):
        if all(r.get(key) is not None for r in rows):
            payload[key] = spread([r[key] for r in rows])
    alternatives = {}
    for decoder in decoders or []:
        if decoder == cfg.model.decoder:
            continue
        alt = decoder_rows(runs, decoder)
        alternatives[decoder] = {
            key: spread([r[key] for r in alt])
            for key in ("test_pixel_error", "test_nme", "test_confidence_auroc")
            if all(r.get(key) is not None for r in alt)
        } | {"runs": alt}
    if alternatives:
        payload["other_decoders"] = alternatives
    targets = {}
    if "target_px" in spec:
        met = payload["test_pixel_error"]["mean"] <= spec["target_px"]
        targets["test_pixel_error"] = {"target": spec["target_px"], "met": met}
    if "target_nme" in spec:
        nme = payload.get("test_nme", {}).get("mean")
        targets["test_nme"] = {"target": spec["target_nme"], "met": nme is not None and nme <= spec["target_nme"]}
    if "beat" in spec and RESULTS.is_file():
        other = json.loads(RESULTS.read_text()).get(spec["beat"])
        if other:
            base = other["test_pixel_error"]["mean"]
            targets["beats_" + spec["beat"]] = {"baseline_px": base, "met": payload["test_pixel_error"]["mean"] < base}
    auroc = payload.get("test_confidence_auroc", {}).get("mean")
    targets["test_confidence_auroc"] = {"target": AUROC_TARGET, "met": auroc is not None and auroc >= AUROC_TARGET}
    payload["targets"] = targets
    return payload


def write_table() -> Path:
    """bench/results/accuracy.md from accuracy.json: one line per part."""
    data = json.loads(RESULTS.read_text())
    lines = [
        "| part | template | budget (min) | runs | test px mean (sd) | test NME % | AUROC (raw) | targets |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for part in PARTS:
        p = data.get(part)
        if not p:
            continue
        px = p["test_pixel_error"]
        nme = p.get("test_nme", {}).get("mean")
        au, au_raw = p.get("test_confidence_auroc", {}).get("mean"), p.get("test_confidence_auroc_raw", {}).get("mean")
        met = ", ".join(f"{k} {'met' if v['met'] else 'missed'}" for k, v in p["targets"].items())
        lines.append(
            f"| {part} | {p['template']} | {p['train_budget_min']:g} | {len(p['runs'])} | {px['mean']:.2f} "
            f"({px['std']:.2f}) | {'-' if nme is None else f'{nme:.2f}'} | "
            f"{'-' if au is None else f'{au:.3f}'} ({'-' if au_raw is None else f'{au_raw:.3f}'}) | {met} |"
        )
    out = RESULTS.with_suffix(".md")
    out.write_text("\n".join(lines) + "\n")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--parts", nargs="+", default=list(PARTS), choices=list(PARTS))
    ap.add_argument("--minutes", type=float, default=17.0, help="training budget per run (the issue allows 20)")
    ap.add_argument("--fresh", action="store_true", help="train every run again (else finished runs are reused)")
    ap.add_argument(
        "--decoders", nargs="*", default=[], help="also evaluate every run with these heatmap decoders (no retraining)"
    )
    args = ap.parse_args()
    # the baseline first: the row that beats it reads its figure
    parts = sorted(args.parts, key=lambda p: 0 if any(s.get("beat") == p for s in PARTS.values()) else 1)
    for part in parts:
        payload = bench_part(part, args.minutes, args.fresh, args.decoders)
        if payload is not None:
            write_section(RESULTS, part, payload)
            print(f"[bench] {part}: {json.dumps(payload['targets'])}", flush=True)
    if RESULTS.is_file():
        print(f"[bench] table: {write_table()}")


if __name__ == "__main__":
    sys.exit(main())
