import numpy as np
import pytest

from seq2seq_lit.data.sampler import BucketBatchSampler


def lengths(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    src = rng.integers(3, 40, n)
    return src, np.clip(src + rng.integers(-5, 6, n), 3, None)


def test_every_example_exactly_once_per_epoch_within_max_tokens() -> None:
    src, tgt = lengths()
    sampler = BucketBatchSampler(src, tgt, max_tokens=300, pool_size=200, seed=3)
    for epoch in range(2):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        flat = [i for b in batches for i in b]
        assert sorted(flat) == list(range(1000))
        for b in batches:
            assert len(b) * max(max(src[b]), max(tgt[b])) <= 300
        assert len(batches) == len(sampler)


def test_batch_size_cap_and_order_depends_only_on_seed_and_epoch() -> None:
    src, tgt = lengths()
    a = BucketBatchSampler(src, tgt, max_tokens=None, batch_size=16, seed=1)
    b = BucketBatchSampler(src, tgt, max_tokens=None, batch_size=16, seed=1)
    assert all(len(batch) <= 16 for batch in a)
    a.set_epoch(0)
    assert list(a) == list(b)
    a.set_epoch(1)
    b.set_epoch(0)
    assert list(a) != list(b)


def test_distributed_ranks_get_different_batches_covering_the_data() -> None:
    src, tgt = lengths()
    ranks = [BucketBatchSampler(src, tgt, max_tokens=300, seed=5, num_replicas=2, rank=r) for r in (0, 1)]
    b0, b1 = list(ranks[0]), list(ranks[1])
    assert len(b0) == len(b1)
    # Rank r takes every second batch of the one-process order, padded by repeating its first batch(es).
    full = BucketBatchSampler(src, tgt, max_tokens=300, seed=5).epoch_batches()
    padded = full + full[: 2 * len(b0) - len(full)]
    assert len(padded) - len(full) in (0, 1)
    assert b0 == padded[0::2] and b1 == padded[1::2]
    # Apart from a repeated padding batch, no example is on both ranks, and together they cover the data.
    repeated = {i for b in padded[len(full) :] for i in b}
    assert ({i for b in b0 for i in b} & {i for b in b1 for i in b}) <= repeated
    assert {i for b in b0 + b1 for i in b} == set(range(1000))


def test_resume_mid_epoch_continues_with_the_remaining_batches() -> None:
    src, tgt = lengths()
    sampler = BucketBatchSampler(src, tgt, max_tokens=300, seed=7)
    sampler.set_epoch(2)
    full = list(sampler)
    sampler.set_epoch(2)
    it = iter(sampler)
    first = [next(it) for _ in range(5)]
    state = sampler.state_dict()
    assert state["epoch"] == 2 and state["batches_yielded"] == 5

    restored = BucketBatchSampler(src, tgt, max_tokens=300, seed=7)
    restored.load_state_dict(state)
    restored.set_epoch(2)  # Lightning calls this at the start of the resumed epoch
    rest = list(restored)
    assert first + rest == full
    assert len(restored) == len(full)  # the epoch's length: Lightning counts the batches done itself

    # A consumer that fetched ahead says how many batches it really finished.
    assert sampler.state_dict(batches_done=4)["batches_yielded"] == 4


def test_max_tokens_below_longest_example_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="data.max_tokens=10 is smaller than the longest example"):
        BucketBatchSampler([5, 12], [4, 8], max_tokens=10)


def test_multi30k_padding_under_ten_percent(tiny_datamodule) -> None:
    dm = tiny_datamodule
    src, tgt = dm.datasets["train"].lengths()
    sampler = dm.train_sampler
    real = positions = 0
    for batch in sampler:
        real += src[batch].sum() + tgt[batch].sum()
        positions += len(batch) * (src[batch].max() + tgt[batch].max())
    assert 1 - real / positions < 0.10
    assert sorted(i for b in sampler for i in b) == list(range(len(src)))


def reference_batches(src, tgt, max_tokens, batch_size, shuffle, pool_size, seed, epoch) -> list[list[int]]:
    """The bucketing rule written the plain way: one example at a time."""
    rng = np.random.default_rng([seed, epoch])
    n = len(src)
    order = rng.permutation(n) if shuffle else np.arange(n)
    batches = []
    for start in range(0, n, pool_size if shuffle else n):
        pool = order[start : start + (pool_size if shuffle else n)]
        current, longest = [], 0
        for i in pool[np.lexsort((tgt[pool], src[pool]))].tolist():
            size = max(src[i], tgt[i])
            tokens_over = max_tokens is not None and max(longest, size) * (len(current) + 1) > max_tokens
            sents_over = batch_size is not None and len(current) + 1 > batch_size
            if current and (tokens_over or sents_over):
                batches.append(current)
                current, longest = [], 0
            current.append(i)
            longest = max(longest, size)
        if current:
            batches.append(current)
    return [batches[i] for i in rng.permutation(len(batches))] if shuffle else batches


@pytest.mark.parametrize(
    ("max_tokens", "batch_size", "shuffle", "pool_size"),
    [(300, None, True, 200), (300, 16, True, 1000), (None, 16, True, 64), (300, None, False, 200), (97, 3, True, 7)],
)
def test_the_vectorised_plan_equals_the_one_example_at_a_time_rule(max_tokens, batch_size, shuffle, pool_size) -> None:
    src, tgt = lengths(n=2000, seed=4)
    sampler = BucketBatchSampler(src, tgt, max_tokens, batch_size, shuffle=shuffle, pool_size=pool_size, seed=9)
    for epoch in (0, 3):
        sampler.set_epoch(epoch)
        want = reference_batches(src, tgt, max_tokens, batch_size, shuffle, pool_size, seed=9, epoch=epoch)
        assert list(sampler) == sampler.epoch_batches() == want
