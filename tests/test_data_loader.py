"""DataLoader: full epochs without replacement, seeded order, views, transforms, resume."""

from __future__ import annotations

import math

import numpy as np
import pytest

from glasscnn.data import Compose, DataLoader, Dataset, RandomCrop, RandomFlip, rescale


def numbered(n: int, c: int = 1, hw: int = 4) -> Dataset:
    """Image i is filled with i (mod 256); label i is i, so batches can be traced back."""
    images = (np.arange(n) % 256).astype(np.uint8)[:, None, None, None]
    images = np.ascontiguousarray(np.broadcast_to(images, (n, c, hw, hw)))
    return Dataset(images, np.arange(n), tuple(str(i) for i in range(n)))


def epoch(loader: DataLoader) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(x.copy(), y.copy()) for x, y in loader]


@pytest.mark.parametrize("n,batch_size", [(10, 3), (12, 4), (5, 8), (1, 1), (130, 128)])
@pytest.mark.parametrize("drop_last", [False, True])
@pytest.mark.parametrize("shuffle", [False, True])
def test_every_example_once_per_epoch(n, batch_size, drop_last, shuffle):
    loader = DataLoader(numbered(n), batch_size, shuffle=shuffle, drop_last=drop_last, seed=3)
    expected_len = n // batch_size if drop_last else math.ceil(n / batch_size)
    assert len(loader) == expected_len
    for _ in range(2):
        batches = epoch(loader)
        assert len(batches) == expected_len
        labels = np.concatenate([y for _, y in batches]) if batches else np.array([], int)
        assert len(np.unique(labels)) == len(labels)  # no replacement
        if not drop_last:
            assert sorted(labels.tolist()) == list(range(n))
        for x, y in batches:
            assert x.shape[1:] == (1, 4, 4) and y.dtype == np.int64
            assert np.array_equal(x[:, 0, 0, 0], (y % 256).astype(np.uint8))
            assert len(y) == batch_size or (not drop_last and y is batches[-1][1])


def test_seeded_and_different_per_epoch():
    ds = numbered(100)
    a, b = DataLoader(ds, 10, seed=1), DataLoader(ds, 10, seed=1)
    first_a, first_b = epoch(a), epoch(b)
    assert all(np.array_equal(ya, yb) for (_, ya), (_, yb) in zip(first_a, first_b, strict=True))
    assert a.epoch == 1
    second = np.concatenate([y for _, y in epoch(a)])
    assert not np.array_equal(second, np.concatenate([y for _, y in first_a]))
    other = np.concatenate([y for _, y in epoch(DataLoader(ds, 10, seed=2))])
    assert not np.array_equal(other, np.concatenate([y for _, y in first_a]))
    a.set_epoch(0)
    again = np.concatenate([y for _, y in epoch(a)])
    assert np.array_equal(again, np.concatenate([y for _, y in first_a]))
    assert np.array_equal(again, a.order(0))


def test_no_shuffle_yields_views_in_order():
    ds = numbered(10)
    batches = list(DataLoader(ds, 4, shuffle=False))
    assert [y.tolist() for _, y in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    for x, y in batches:
        assert np.shares_memory(x, ds.images) and np.shares_memory(y, ds.labels)
    assert DataLoader(ds, 4, shuffle=False).order() is None


def test_transform_applied_per_batch():
    ds = numbered(9)
    loader = DataLoader(ds, 4, shuffle=False, transform=rescale)
    x, _ = next(iter(loader))
    assert x.dtype == np.float32
    np.testing.assert_array_equal(x, ds.images[:4] / np.float32(255))


def test_random_transform_gets_a_generator_per_epoch_and_batch():
    ds = numbered(12, c=3, hw=8)
    augment = Compose(RandomCrop(2), RandomFlip())
    a = epoch(DataLoader(ds, 4, seed=5, transform=augment))
    b = epoch(DataLoader(ds, 4, seed=5, transform=augment))
    assert all(np.array_equal(xa, xb) for (xa, _), (xb, _) in zip(a, b, strict=True))
    loader = DataLoader(ds, 4, seed=5, transform=augment)
    epoch(loader)
    c = epoch(loader)
    assert not all(np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c, strict=True))


def test_break_restarts_the_same_epoch():
    loader = DataLoader(numbered(20), 5, seed=0)
    first = next(iter(loader))[1].copy()
    assert loader.epoch == 0 and loader.state_dict()["batch"] == 1
    loader.set_epoch(0)
    assert np.array_equal(next(iter(loader))[1], first)


@pytest.mark.parametrize("stop_after", [0, 3, 8, 10, 17])
def test_resume_is_bitwise_identical(tmp_path, stop_after):
    ds = numbered(50, c=3, hw=6)

    def make():
        augment = Compose(RandomCrop(2), RandomFlip(), rescale)
        return DataLoader(ds, 7, seed=11, transform=augment)  # 8 batches per epoch

    ref_loader = make()
    reference = epoch(ref_loader) + epoch(ref_loader) + epoch(ref_loader)
    run = make()
    seen = []
    while len(seen) < stop_after:
        for x, y in run:
            seen.append((x.copy(), y.copy()))
            if len(seen) == stop_after:
                break
    np.savez(tmp_path / "loader.npz", **run.state_dict())
    resumed = make()
    with np.load(tmp_path / "loader.npz") as saved:
        resumed.load_state_dict(saved)
    while len(seen) < len(reference):
        seen.extend((x.copy(), y.copy()) for x, y in resumed)
    for (xr, yr), (xs, ys) in zip(reference, seen, strict=True):
        assert np.array_equal(yr, ys) and np.array_equal(xr, xs)


def test_state_after_last_batch_points_to_next_epoch():
    loader = DataLoader(numbered(10), 5, seed=0)
    for _ in loader:
        state = loader.state_dict()
    assert (state["epoch"], state["batch"]) == (1, 0)


def test_bad_arguments_and_states():
    ds = numbered(10)
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        DataLoader(ds, 0)
    loader = DataLoader(ds, 3)
    state = loader.state_dict()
    with pytest.raises(KeyError, match="missing key 'seed'"):
        loader.load_state_dict({k: v for k, v in state.items() if k != "seed"})
    with pytest.raises(ValueError, match="state is for 10 examples in batches of 3, this "
                                         "loader has 10 in batches of 4"):
        DataLoader(ds, 4).load_state_dict(state)
    with pytest.raises(ValueError, match=r"batch 4 outside 0\.\.3"):
        loader.load_state_dict({**state, "batch": 4})
    with pytest.raises(ValueError, match="epoch must be >= 0"):
        loader.set_epoch(-1)
