from __future__ import annotations

import pytest
import torch

from engine.spec.kv_cache import KVCache


def rows(m: int, fill: float) -> torch.Tensor:
    return torch.full((2, m, 4), fill)


def test_write_sets_the_layer_length_and_view_reads_exactly_the_valid_rows() -> None:
    cache = KVCache(num_layers=3, num_kv_heads=2, head_dim=4, capacity=8)
    cache.write(0, 0, rows(3, 1.0), rows(3, -1.0))
    assert cache.lengths == (3, 0, 0)
    keys, values = cache.view(0)
    assert keys.shape == (2, 3, 4)
    assert torch.equal(keys, rows(3, 1.0))
    assert torch.equal(values, rows(3, -1.0))


def test_a_write_below_the_length_overwrites_and_drops_what_followed() -> None:
    cache = KVCache(num_layers=1, num_kv_heads=2, head_dim=4, capacity=8)
    cache.write(0, 0, rows(5, 1.0), rows(5, 1.0))
    cache.write(0, 2, rows(1, 2.0), rows(1, 2.0))
    assert cache.length(0) == 3
    keys, _ = cache.view(0)
    assert keys[0, :, 0].tolist() == [1.0, 1.0, 2.0]


def test_truncate_rolls_back_every_layer_but_never_lengthens_one() -> None:
    cache = KVCache(num_layers=3, num_kv_heads=2, head_dim=4, capacity=8)
    cache.write(0, 0, rows(6, 1.0), rows(6, 1.0))
    cache.write(1, 0, rows(4, 1.0), rows(4, 1.0))
    cache.write(2, 0, rows(2, 1.0), rows(2, 1.0))
    cache.truncate(3)
    assert cache.lengths == (3, 3, 2)
    cache.reset()
    assert cache.lengths == (0, 0, 0)


def test_gaps_and_overflows_are_refused() -> None:
    cache = KVCache(num_layers=1, num_kv_heads=2, head_dim=4, capacity=4)
    with pytest.raises(ValueError, match="gap"):
        cache.write(0, 1, rows(1, 1.0), rows(1, 1.0))
    with pytest.raises(ValueError, match="capacity"):
        cache.write(0, 0, rows(5, 1.0), rows(5, 1.0))
    with pytest.raises(ValueError, match="negative"):
        cache.truncate(-1)
