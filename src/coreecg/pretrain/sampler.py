"""Which segments each optimizer step reads: a seeded permutation per epoch, split across ranks, resumable.

Unlike a ``RandomSampler``, the order is a pure function of (seed, epoch), and a position is just
(epoch, batch), so a resumed run reads exactly the batches the interrupted one would have read.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch


class EpochBatches:
    """Batches of ``batch_size`` indices into a dataset of ``n`` items, for one rank of ``world``."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.batches_per_epoch = (n // world) // batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(
                f"the training selection has {n} segments, fewer than one batch of {batch_size} "
                f"on each of {world} process(es); lower train.batch_size"
            )
        self.start = (0, 0)  # (epoch, batch) of the next batch to yield

    def epoch(self, epoch: int) -> torch.Tensor:
        """This rank's batches of one epoch: batches_per_epoch × batch_size."""
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        order = torch.randperm(self.n, generator=generator)
        mine = order[: (self.n // self.world) * self.world][self.rank :: self.world]
        return mine[: self.batches_per_epoch * self.batch_size].view(self.batches_per_epoch, self.batch_size)

    def position_after(self, consumed: int) -> tuple[int, int]:
        """(epoch, batch) after ``consumed`` batches from the very beginning."""
        return divmod(consumed, self.batches_per_epoch)

    def __iter__(self) -> Iterator[list[int]]:
        epoch, first = self.start
        while True:
            for batch in self.epoch(epoch)[first:]:
                yield batch.tolist()
            epoch, first = epoch + 1, 0
