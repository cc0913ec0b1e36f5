"""Many videos: folders expanded, a batch split into shards for a cluster job array, and videos predicted
concurrently by worker threads that share one loaded network.

Threads, not processes: the network is loaded once, and the work that leaves cores idle while one video is
predicted (PyAV decoding, resizing, writing rows, the labelled MP4) runs in C code that releases the GIL. The
cores are split between the workers (:func:`threads_per_worker`): each ONNX session gets its own intra-op pool of
``cores // N`` threads, and torch's intra-op pool is set to ``cores // N`` for as long as the workers run.

Torch is imported only when a torch runtime asks for it (:func:`torch_threads`), so the ONNX path stays torch-free.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

from keyhead.errors import KeyheadError
from keyhead.io.images import IMAGE_SUFFIXES
from keyhead.io.video import VIDEO_SUFFIXES

__all__ = [
    "check_jobs",
    "cpu_cores",
    "parse_shard",
    "plan_inputs",
    "run_workers",
    "select_shard",
    "split_inputs",
    "threads_per_worker",
    "torch_threads",
]

T = TypeVar("T")
R = TypeVar("R")
_WORKER_DONE = object()  # a worker's last message to the caller's thread


def split_inputs(inputs: Sequence[str | os.PathLike]) -> tuple[list[Path], list[Path]]:
    """Split ``keyhead predict``'s inputs into (image inputs, video files).

    A file with a video suffix (:data:`keyhead.io.video.VIDEO_SUFFIXES`) is a video. A folder gives its videos,
    sorted by name (hidden files such as macOS ``._name.mp4`` left out), and goes to the image inputs too when it
    holds images or holds no video (the image path then reports an empty folder, as before). Anything else is an
    image input, checked by the image path.

    Example:
        >>> split_inputs(["frames/", "a.mp4"])  # doctest: +SKIP
        ([PosixPath('frames')], [PosixPath('a.mp4')])
    """
    images: list[Path] = []
    videos: list[Path] = []
    for item in inputs:
        path = Path(item)
        if not path.is_dir():
            (videos if path.suffix.lower() in VIDEO_SUFFIXES else images).append(path)
            continue
        files = sorted((f for f in path.iterdir() if f.is_file() and not f.name.startswith(".")), key=lambda f: f.name)
        found = [f for f in files if f.suffix.lower() in VIDEO_SUFFIXES]
        videos += found
        if not found or any(f.suffix.lower() in IMAGE_SUFFIXES for f in files):
            images.append(path)
    return images, videos


def parse_shard(text: str | None) -> tuple[int, int] | None:
    """``"I/N"`` (``--shard``) -> (I, N), or None when not given.

    Raises:
        KeyheadError: not two integers ``I/N`` with ``0 <= I < N``.
    """
    if text is None:
        return None
    parts = text.strip().split("/")
    try:
        i, n = (int(p) for p in parts) if len(parts) == 2 else (-1, 0)
    except ValueError:
        i, n = -1, 0
    if not 0 <= i < n:
        raise KeyheadError(
            f"--shard {text!r}: give I/N with 0 <= I < N, e.g. --shard 0/4 for the first of 4 jobs "
            "(SLURM: --shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT with sbatch --array=0-3)"
        )
    return i, n


def select_shard(videos: Sequence[T], shard: tuple[int, int] | None) -> list[T]:
    """The videos of shard ``(I, N)``: those at positions ``pos % N == I`` of all videos sorted by file name (then
    path), kept in input order; every video when ``shard`` is None. The N shards cover each video exactly once,
    whatever order the inputs were given in."""
    if shard is None:
        return list(videos)
    i, n = shard
    if not 0 <= i < n:
        raise KeyheadError(f"shard {shard}: give (I, N) with 0 <= I < N")
    ordered = sorted(range(len(videos)), key=lambda k: (Path(videos[k]).name, str(videos[k])))
    mine = set(ordered[i::n])
    return [v for k, v in enumerate(videos) if k in mine]


def check_jobs(jobs: int, runtime: str = "torch") -> None:
    """Refuse a ``--jobs`` that is not a positive number, or N > 1 with ``torch.compile`` (not thread-safe:
    pytorch/pytorch#118260)."""
    if jobs < 1:
        raise KeyheadError(f"--jobs {jobs}: give a positive number of videos to predict at once (1: one by one)")
    if jobs > 1 and runtime == "compile":
        raise KeyheadError(
            f"--jobs {jobs} with --runtime compile: torch.compile is not thread-safe; "
            "use --jobs 1, or --runtime torch or onnx"
        )


def cpu_cores() -> int:
    """The cores this process may run on (a cluster job's allocation, not the whole node, where the OS says)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def threads_per_worker(workers: int) -> int:
    """Intra-op threads for each of ``workers`` concurrent predictions: the cores split evenly, at least one."""
    return max(1, cpu_cores() // max(1, workers))


@contextlib.contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Set torch's intra-op threads to ``threads`` (None: leave them) and restore the old number afterwards.

    Threads started inside take the number on their first parallel operation, so every worker gets its share.
    """
    if threads is None:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_workers(
    fn: Callable[[T, Any], R],
    items: Sequence[T],
    resources: Sequence[Any],
    progress: bool = True,
    desc: str = "videos",
) -> list[R]:
    """``fn(item, resource)`` for every item, by one worker thread per resource; results in input order.

    Each worker holds its resource (e.g. its own ONNX session, or the shared model) and takes the next item until
    none is left. The first exception raised by a worker is raised here once the running items are finished;
    after it, no worker starts a new item. Ctrl-C (KeyboardInterrupt) is passed on to the running workers, whose
    clean-up (temporary files) runs within a few seconds, and raised; interrupted videos resume from their
    ``.csv.partial`` files.

    Args:
        fn: the work for one item.
        items: the inputs, in order.
        resources: one per worker; their number is the number of threads.
        progress: one overall progress bar (items done), instead of the workers' own bars.
        desc: the bar's label.

    Example:
        >>> run_workers(lambda x, r: x * r, [1, 2, 3], [10, 10], progress=False)
        [10, 20, 30]
    """
    from tqdm import tqdm

    todo: queue.SimpleQueue[tuple[int, T]] = queue.SimpleQueue()
    for pair in enumerate(items):
        todo.put(pair)
    finished: queue.SimpleQueue[Any] = queue.SimpleQueue()  # None: an item done; an exception; _WORKER_DONE
    results: list[Any] = [None] * len(items)
    stop = threading.Event()

    def work(resource: Any) -> None:
        try:
            while not stop.is_set():
                try:
                    k, item = todo.get_nowait()
                except queue.Empty:
                    break
                results[k] = fn(item, resource)
                finished.put(None)
        except BaseException as exc:  # handed to the caller's thread, which raises it
            stop.set()
            finished.put(exc)
        finally:
            finished.put(_WORKER_DONE)

    workers = [
        threading.Thread(target=work, args=(r,), name=f"keyhead-worker-{k}", daemon=True)
        for k, r in enumerate(resources)
    ]
    errors: list[BaseException] = []
    with tqdm(total=len(items), unit="video", desc=desc, disable=not progress) as bar:
        try:
            for t in workers:
                t.start()
            running = len(workers)
            while running:
                event = finished.get()
                if event is _WORKER_DONE:
                    running -= 1
                elif event is None:
                    bar.update(1)
                else:
                    errors.append(event)
        except BaseException:
            stop.set()
            _interrupt(workers)
            raise
    if errors:
        raise errors[0]
    return results


def _interrupt(workers: list[threading.Thread], wait_s: float = 10.0) -> None:
    """Raise KeyboardInterrupt in the running worker threads (at their next Python instruction, so after the current
    batch) and wait up to ``wait_s`` for them; daemon threads still running then end with the process."""
    import ctypes
    import time

    for t in workers:
        if t.is_alive() and t.ident is not None:
            ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(t.ident), ctypes.py_object(KeyboardInterrupt))
    deadline = time.monotonic() + wait_s
    for t in workers:
        t.join(max(0.0, deadline - time.monotonic()))


def plan_inputs(
    inputs: Sequence[str | os.PathLike], jobs: int = 1, shard: str | None = None, runtime: str = "torch"
) -> tuple[list[Path], list[Path], tuple[int, int] | None]:
    """``keyhead predict``'s inputs as (image inputs, videos, shard), with ``--jobs`` and ``--shard`` checked before
    anything is read or written (:func:`split_inputs`, :func:`check_jobs`, :func:`parse_shard`).

    Raises:
        KeyheadError: a bad ``--jobs`` or ``--shard``, or ``--shard`` with images (every shard would write the
            same ``predictions.csv``).
    """
    check_jobs(jobs, runtime)
    at = parse_shard(shard)
    images, videos = split_inputs(inputs)
    if at is not None and images:
        raise KeyheadError(
            f"--shard splits videos, but {images[0]} is an image input; "
            "predict the images in a command of their own, without --shard"
        )
    return images, videos, at
