"""Issue 18's benchmark: top-down pose and identity tracking on SLEAP's two-fly clip, beside SLEAP's own output.

Data: ../shared/data/sleap-multi-animal-samples/clip.mp4 + clip.slp (1500 frames, 2 flies, 13 nodes, proofread
identities on every frame) and clip.predictions.slp (SLEAP's tracked predictions, 2 nodes).

Protocol: train on every 10th labelled frame of frames 0-999 (10 % of them for validation), test on every frame of
1000-1499 (per-instance pixel error after optimal matching, OKS mAP); predict and track all 1500 frames from the
video and score identities against the file's true tracks (identity switches, IDF1, MOTA), beside the same figures
for SLEAP's predictions on the nodes both share; video frames/s of the multi-animal predictor beside the pose model
run as a single-animal model on the same frames.

    python bench/multi_animal.py [--minutes 20] [--fresh]

Writes bench/results/multi_animal.json (section "multi_animal", with the machine it ran on).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np
from _common import cpu_flags, write_section

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "sleap-multi-animal-samples"
OUT = ROOT / "bench" / "runs" / "multi_animal"
RESULTS = ROOT / "bench" / "results" / "multi_animal.json"


def truth_tracks(labels_path: Path, node_names: list[str] | None = None) -> tuple[list, list, list[str]]:
    """Per frame (track ids (P,), poses (P, K, 2)) from a .slp's instances (user ones, or predicted when none)."""
    import sleap_io as sio

    labels = sio.load_slp(str(labels_path))
    names = node_names or labels.skeleton.node_names
    cols = [labels.skeleton.node_names.index(n) for n in names]
    tracks = {t.name: i for i, t in enumerate(labels.tracks)}
    n = max(lf.frame_idx for lf in labels.labeled_frames) + 1
    ids: list = [np.zeros(0, dtype=np.int64)] * n
    poses: list = [np.zeros((0, len(names), 2))] * n
    for lf in labels.labeled_frames:
        insts = lf.user_instances or lf.predicted_instances
        ids[lf.frame_idx] = np.array([tracks[i.track.name] if i.track else -1 for i in insts], dtype=np.int64)
        poses[lf.frame_idx] = np.stack([i.numpy()[cols] for i in insts]) if insts else poses[lf.frame_idx]
    return ids, poses, [t.name for t in labels.tracks]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=20.0, help="CPU minutes for both stages together")
    parser.add_argument("--fresh", action="store_true", help="train again instead of reusing bench/runs/multi_animal")
    parser.add_argument("--set", action="append", default=[], help="a config override (repeatable)")
    parser.add_argument("--section", default="multi_animal", help="results section (and runs subfolder) name")
    args = parser.parse_args()
    out_dir = OUT.parent / args.section
    if not (DATA / "clip.slp").is_file():
        raise SystemExit(f"{DATA} not found: this benchmark needs ../shared/data/sleap-multi-animal-samples")
    from keyhead.config import load_config, resolve_template
    from keyhead.data.formats import read_slp
    from keyhead.inference.video import predict_videos
    from keyhead.io.atomic import atomic_write
    from keyhead.multimetrics import tracking_metrics
    from keyhead.topdown.train import train_topdown
    from keyhead.topdown.video import predict_video_topdown

    if args.fresh and out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    frames = read_slp(DATA / "clip.slp")
    order = np.argsort(frames.frame_indices)
    fi = frames.frame_indices
    train_rows = [i for i in order if fi[i] < 1000 and fi[i] % 10 == 0]
    val_rows = train_rows[4::10]
    train_rows = [i for i in train_rows if i not in set(val_rows)]
    test_rows = [i for i in order if fi[i] >= 1000]
    split = {
        name: [frames.image_paths[i] for i in rows]
        for name, rows in (("train", train_rows), ("val", val_rows), ("test", test_rows))
    }
    split_file = out_dir / "split.json"
    with atomic_write(split_file) as f:
        json.dump(split, f)
    run = out_dir / "flies"
    overrides = [
        f"data.path={DATA / 'clip.slp'}",
        f"data.split_file={split_file}",
        f"train.max_minutes={args.minutes}",
        f"output_dir={out_dir}",
        "name=flies",
        "topdown.anchor=thorax",
        *args.set,
    ]
    cfg = load_config(resolve_template("topdown_lite0"), overrides)
    t0 = time.perf_counter()
    if (run / "topdown.json").is_file():
        train_topdown(None, resume=run, progress=False)
    else:
        train_topdown(cfg, progress=False)
    train_minutes = (time.perf_counter() - t0) / 60
    metrics = json.loads((run / "metrics.json").read_text())["splits"]

    t0 = time.perf_counter()
    tracked = predict_video_topdown(run, DATA / "clip.mp4", out_dir / "predictions", resume=False, progress=False)
    multi_fps = tracked.frames_per_second
    single = predict_videos(
        run / "pose", [DATA / "clip.mp4"], out_dir / "single", resume=False, max_frames=300, progress=False
    )[0]
    from keyhead.io.predictions import read_multi_prediction_table

    _, individuals, names, xy, _ = read_multi_prediction_table(tracked.csv)
    gt_ids, gt_poses, track_names = truth_tracks(DATA / "clip.slp")
    pred_ids = [np.flatnonzero(np.isfinite(xy[t]).all(-1).any(-1)) for t in range(len(xy))]
    pred_poses = [xy[t][pred_ids[t]] for t in range(len(xy))]
    threshold = 20.0  # pixels of mean keypoint distance for a match (a fly is ~100 px long)
    ours = tracking_metrics(
        list(zip(pred_ids, pred_poses, strict=True)), list(zip(gt_ids, gt_poses, strict=True)), threshold
    )
    s_ids, s_poses, _ = truth_tracks(DATA / "clip.predictions.slp")
    shared = [n for n in ("head", "thorax") if n in names]
    g2_ids, g2_poses, _ = truth_tracks(DATA / "clip.slp", shared)
    cols = [names.index(n) for n in shared]
    truth2 = list(zip(g2_ids, g2_poses, strict=True))
    sleap = tracking_metrics(list(zip(s_ids, s_poses, strict=True)), truth2, threshold)
    ours_shared = tracking_metrics(
        list(zip(pred_ids, [p[:, cols] for p in pred_poses], strict=True)), truth2, threshold
    )
    payload = {
        "cpu": cpu_flags(),
        "train_minutes_budget": args.minutes,
        "overrides": overrides,
        "train_wall_minutes": train_minutes,
        "pose": {k: metrics[k] for k in metrics},
        "tracking_all_nodes": ours,
        "tracking_shared_nodes": {"keyhead": ours_shared, "sleap_predictions": sleap, "nodes": shared},
        "video_frames_per_second": {
            "multi_animal_topdown": multi_fps,
            "single_animal_pose_model": single.frames_per_second,
        },
        "match_threshold_px": threshold,
        "targets": {"idf1": ">= 0.99", "id_switches": "<= SLEAP's"},
        "met": {
            "idf1": ours["idf1"] >= 0.99,
            "id_switches": ours_shared["num_switches"] <= sleap["num_switches"],
        },
    }
    write_section(RESULTS, args.section, payload)
    print(json.dumps(payload, indent=1, default=float))


if __name__ == "__main__":
    main()
