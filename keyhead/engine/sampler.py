"""Training batches that depend only on (seed, epoch): exact resume, and the same global batches on N processes.

An epoch's order is drawn from ``numpy.random.default_rng((seed, epoch))``, so no random state has to be saved for
``keyhead train --resume`` to continue exactly where an interrupted run stopped. Under DDP every process draws the
same order and takes its own contiguous share of each global batch, so N processes see, step by step, the same
global batches as one process does (the gradients DDP averages are those of the same samples).
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

from keyhead.errors import KeyheadError


def rank_and_world() -> tuple[int, int]:
    """(global rank, world size) of this process: from torch.distributed once initialised, else 0 and 1."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def launched_rank() -> int:
    """The rank a launcher gave this process (``LOCAL_RANK`` of Lightning's DDP launcher; 0 when not launched)."""
    try:
        return int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError:
        return 0


def seed_epoch(seed: int, epoch: int) -> None:
    """Seed torch, NumPy and ``random`` from (seed, epoch) alone (dropout and anything else drawn during an epoch)."""
    value = int(np.random.SeedSequence((seed, epoch)).generate_state(1)[0])
    torch.manual_seed(value)
    np.random.seed(value)
    random.seed(value)


class EpochBatchSampler(Sampler[list[int]]):
    """Batches of dataset positions, shuffled from (seed, epoch); under DDP, each rank's share of every batch.

    Args:
        n: dataset length N.
        batch_size: the global batch size B (summed over processes); each of W processes gets B / W per step
            (``numpy.array_split`` shares when B is not a multiple of W).
        seed: base seed.
        shuffle: draw a new order each epoch (else 0..N-1).
        drop_last: drop the last, smaller batch (only when N > B, so a tiny dataset still trains).
        start_epoch: the epoch before the first ``set_epoch`` call.

    Example:
        >>> s = EpochBatchSampler(10, 4, seed=0)
        >>> s.set_epoch(3)
        >>> [len(b) for b in s]
        [4, 4]
    """

    def __init__(
        self, n: int, batch_size: int, seed: int, shuffle: bool = True, drop_last: bool = True, start_epoch: int = 0
    ) -> None:
        self.n = n
        self.batch_size = max(1, min(batch_size, n))
        self.seed = seed
        self.shuffle = shuffle
        self.drop_last = drop_last and n > batch_size
        self.epoch = start_epoch

    def set_epoch(self, epoch: int) -> None:
        """Called by Lightning at the start of every epoch with the run's epoch index."""
        self.epoch = epoch

    def _global_batches(self) -> list[np.ndarray]:
        rng = np.random.default_rng((self.seed, self.epoch))
        order = rng.permutation(self.n) if self.shuffle else np.arange(self.n)
        stop = self.n - self.n % self.batch_size if self.drop_last else self.n
        return [order[i : i + self.batch_size] for i in range(0, stop, self.batch_size)]

    def __iter__(self) -> Iterator[list[int]]:
        rank, world = rank_and_world()
        for batch in self._global_batches():
            if len(batch) < world:  # a process without samples would leave the others waiting for its gradients
                raise KeyheadError(
                    f"a training batch of {len(batch)} frames cannot be shared by {world} processes; "
                    f"set train.batch_size to a multiple of train.devices={world} and label at least that many frames"
                )
            yield np.array_split(batch, world)[rank].tolist()

    def __len__(self) -> int:
        return len(self._global_batches())
