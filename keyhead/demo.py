"""``keyhead demo``: the main job on the embedded default data, end to end, in a few minutes on a laptop CPU."""

from __future__ import annotations

import json
import time
from pathlib import Path

from keyhead.config import load_config, template_dir


def run_demo(out: str | Path = "demo", minutes: float = 4.0, progress: bool = True) -> Path:
    """Synthesise data (once), train the demo config, evaluate, predict the test images, plot.

    Returns:
        The run folder.
    """
    from keyhead.data.synth import generate
    from keyhead.engine.train import train
    from keyhead.inference.images import predict_images

    t0 = time.perf_counter()
    out = Path(out)
    data = out / "data"
    if not (data / "CollectedData.csv").is_file():
        print(f"[1/4] synthesising the demo dataset in {data}")
        generate(data, kind="animal", seed=0, progress=progress)
    else:
        print(f"[1/4] using the synthetic dataset in {data}")
    print(f"[2/4] training (budget {minutes:g} min) and [3/4] evaluating")
    cfg = load_config(
        template_dir() / "demo.yaml",
        [f"data.path={data.resolve()}", f"output_dir={out.resolve() / 'runs'}", f"train.max_minutes={minutes}"],
    )
    run = train(cfg, progress=progress)
    split = json.loads((run / "split.json").read_text())
    print("[4/4] predicting the held-out test images")
    predict_images(run, [data / p for p in split["test"]], run / "predictions", progress=progress)
    metrics = json.loads((run / "metrics.json").read_text())["splits"]
    test = metrics.get("test", {})
    print(
        f"\ndemo done in {time.perf_counter() - t0:.0f} s. "
        f"test pixel error {test.get('pixel_error', float('nan')):.2f} px "
        f"(RMSE {test.get('rmse_px', float('nan')):.2f} px) over {test.get('n_frames', 0)} frames\n"
        f"  run folder:   {run}\n  metrics:      {run / 'metrics.json'}\n  curve:        {run / 'training_curve.png'}\n"
        f"  overlays:     {run / 'overlays_test.png'}  and  {run / 'predictions' / 'overlays'}\n"
        f"  predictions:  {run / 'predictions' / 'predictions.csv'}"
    )
    return run
