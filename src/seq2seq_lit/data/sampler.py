"""Length-bucketing batch sampler: little padding, shuffled batches, resumable mid-epoch."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np
import torch.distributed as dist
from torch.utils.data import Sampler

from seq2seq_lit.errors import ConfigError


def check_batch_limits(max_tokens: int | None, batch_size: int | None, longest: int, what: str) -> None:
    """Fail, naming the key, when no batch could hold ``longest`` token positions (``what`` says whose)."""
    if max_tokens is None and batch_size is None:
        raise ConfigError("set data.max_tokens or data.batch_size (or both)")
    if max_tokens is not None and max_tokens < longest:
        raise ConfigError(
            f"data.max_tokens={max_tokens} is smaller than {what}; raise data.max_tokens to at least {longest} "
            "or lower data.max_length"
        )
    if batch_size is not None and batch_size < 1:
        raise ConfigError(f"data.batch_size={batch_size} must be >= 1 (or null)")


class BucketBatchSampler(Sampler[list[int]]):
    """Yield batches of example indices of similar length.

    Each epoch the examples are shuffled, split into pools of ``pool_size`` examples, each pool is sorted
    by (source length, target length) and cut into batches holding at most ``max_tokens`` token positions
    (sentences x longest side, padding included) and at most ``batch_size`` sentences; the batches are
    then shuffled. The order depends only on ``seed`` and the epoch, which changes through ``set_epoch``
    (as with DistributedSampler; Lightning calls it each epoch). Under distributed training each rank
    takes every ``num_replicas``-th batch; when shuffling (training) batches are repeated at the end so all
    ranks get the same count, otherwise (evaluation) every example is seen exactly once.
    """

    def __init__(
        self,
        src_lengths: Sequence[int] | np.ndarray,
        tgt_lengths: Sequence[int] | np.ndarray,
        max_tokens: int | None = None,
        batch_size: int | None = None,
        shuffle: bool = True,
        pool_size: int = 65536,
        seed: int = 0,
        num_replicas: int | None = None,
        rank: int | None = None,
    ) -> None:
        # int32 throughout the plan: at millions of examples every array is tens of MB, in every rank.
        self.src_lengths = np.asarray(src_lengths, dtype=np.int32)
        self.tgt_lengths = np.asarray(tgt_lengths, dtype=np.int32)
        longest = int(np.maximum(self.src_lengths, self.tgt_lengths).max(initial=0))
        check_batch_limits(max_tokens, batch_size, longest, f"the longest example ({longest} tokens)")
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.shuffle, self.pool_size, self.seed = shuffle, pool_size, seed
        # None: read from torch.distributed when batches are made (the process group may start later).
        self._num_replicas, self._rank = num_replicas, rank
        self.epoch = 0
        self._resume_from = 0  # batches of the current epoch already consumed before a restart
        self._yielded = 0
        self._cache: tuple[tuple[int, int, int], tuple[np.ndarray, np.ndarray, np.ndarray]] | None = None
        # Lightning calls set_epoch on ``dataloader.batch_sampler.sampler`` only.
        self.sampler = self

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self._resume_from = 0
        self.epoch = epoch

    @property
    def num_replicas(self) -> int:
        if self._num_replicas is not None:
            return self._num_replicas
        return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1

    @property
    def rank(self) -> int:
        if self._rank is not None:
            return self._rank
        return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0

    def epoch_batches(self) -> list[list[int]]:
        """This rank's batches of the current epoch, in order (the ones already done included)."""
        order, starts, ends = self._plan()
        return [order[a:b].tolist() for a, b in zip(starts.tolist(), ends.tolist())]

    def batch(self, j: int) -> list[int]:
        """This rank's ``j``-th batch of the current epoch."""
        order, starts, ends = self._plan()
        return order[starts[j] : ends[j]].tolist()

    def _plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """This rank's batches as arrays: batch ``j`` is ``order[starts[j]:ends[j]]``. Cached per epoch and rank,
        so an epoch of millions of examples costs a few arrays, not a Python list per batch."""
        key = (self.epoch, self.num_replicas, self.rank)
        if self._cache is None or self._cache[0] != key:
            self._cache = (key, self._make_plan())
        return self._cache[1]

    def _make_plan(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n = len(self.src_lengths)
        rng = np.random.default_rng([self.seed, self.epoch])
        order = np.arange(n, dtype=np.int32 if n < 2**31 else np.int64)
        if self.shuffle:
            rng.shuffle(order)  # the permutation rng.permutation(n) gives, without its int64 copy
        pool_size = self.pool_size if self.shuffle else max(n, 1)
        # Sort each pool by (source length, target length): one stable sort on (pool number, src, tgt).
        pool = np.arange(n, dtype=order.dtype) // pool_size
        order = order[np.lexsort((self.tgt_lengths[order], self.src_lengths[order], pool))]
        del pool
        sizes = np.maximum(self.src_lengths, self.tgt_lengths)[order]
        pool_ends = np.minimum(np.arange(pool_size, n + pool_size, pool_size), n) if n else np.zeros(0, np.int64)
        cuts = [self._cut(sizes, a, b) for a, b in zip([0, *pool_ends[:-1].tolist()], pool_ends.tolist())]
        starts = np.concatenate(cuts) if cuts else np.zeros(0, dtype=np.int64)
        ends = np.append(starts[1:], n)
        if self.shuffle:
            perm = rng.permutation(len(starts))
            starts, ends = starts[perm], ends[perm]
        if self.num_replicas > 1:
            if self.shuffle:  # training: every rank needs the same number of steps for gradient sync
                pad = -len(starts) % self.num_replicas
                starts, ends = np.append(starts, starts[:pad]), np.append(ends, ends[:pad])
            # Evaluation shards without repeats, so synced corpus metrics count every sentence once.
            starts, ends = starts[self.rank :: self.num_replicas], ends[self.rank :: self.num_replicas]
        return order, starts, ends

    def _cut(self, sizes: np.ndarray, begin: int, end: int) -> np.ndarray:
        """Start positions of the batches that cut ``sizes[begin:end]`` (one sorted pool) greedily: a batch
        grows while (its longest example x its count) fits ``max_tokens`` and its count fits ``batch_size``.

        One step per batch, not per example: from each batch start, a window of the examples that could join
        it (no more than ``max_tokens`` / the first one's size) gives the batch's length at once.
        """
        starts = []
        i = begin
        while i < end:
            limit = end - i
            if self.batch_size is not None:
                limit = min(limit, self.batch_size)
            if self.max_tokens is not None:
                # The running maximum is at least sizes[i], so no batch from i holds more than this.
                limit = min(limit, max(1, self.max_tokens // int(sizes[i])))
                longest = np.maximum.accumulate(sizes[i : i + limit])
                fits = longest * np.arange(1, limit + 1) <= self.max_tokens
                # ``fits`` is True then False (both factors grow); the first example always goes in.
                limit = max(1, int(fits.sum()))
            starts.append(i)
            i += limit
        return np.asarray(starts, dtype=np.int64)

    def __iter__(self) -> Iterator[list[int]]:
        order, starts, ends = self._plan()
        start, self._resume_from = self._resume_from, 0
        self._yielded = start
        for a, b in zip(starts[start:].tolist(), ends[start:].tolist()):
            self._yielded += 1
            yield order[a:b].tolist()
        self._yielded = 0

    def __len__(self) -> int:
        """Batches in the whole epoch, also when resuming mid-epoch (Lightning counts the done ones itself)."""
        return len(self._plan()[1])

    def state_dict(self, batches_done: int | None = None) -> dict[str, int]:
        """Position in the epoch's batch order.

        ``batches_done``: batches the consumer has finished with; by default the batches handed out so far,
        which overcounts when the consumer holds a batch it has not finished (one interrupted mid-step).
        """
        done = self._yielded if batches_done is None else batches_done
        return {"epoch": self.epoch, "batches_yielded": done, "seed": self.seed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Resume: the next iteration continues the saved epoch after its done batches."""
        self.epoch = int(state["epoch"])
        self.seed = int(state.get("seed", self.seed))
        self._resume_from = int(state["batches_yielded"])
