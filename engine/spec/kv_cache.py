"""A preallocated key/value cache for one sequence, with a length per layer and rollback.

Each layer keeps its own length because self-speculation fills layers unevenly: an early-exit drafter runs only the
first K layers on its draft tokens, so layers below K hold positions that layers K and up have not seen yet. Verify
then writes the upper layers and rolls every layer back to the accepted prefix with :meth:`KVCache.truncate`.

Rollback only lowers the lengths: the stale rows past a length are never read (attention reads ``[0, length)``) and
are overwritten by the next write at those positions, so rejecting a draft costs nothing.
"""

from __future__ import annotations

import torch


class KVCache:
    """Keys and values for ``num_layers`` layers, each ``[kv_heads, capacity, head_dim]``, allocated once."""

    def __init__(
        self,
        num_layers: int,
        num_kv_heads: int,
        head_dim: int,
        capacity: int,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> None:
        shape = (num_layers, num_kv_heads, capacity, head_dim)
        self.keys = torch.zeros(shape, dtype=dtype, device=device)
        self.values = torch.zeros(shape, dtype=dtype, device=device)
        self.capacity = capacity
        self._lengths = [0] * num_layers

    def length(self, layer: int) -> int:
        """How many positions ``[0, length)`` of ``layer`` hold valid keys and values."""
        return self._lengths[layer]

    @property
    def lengths(self) -> tuple[int, ...]:
        return tuple(self._lengths)

    def write(self, layer: int, start: int, keys: torch.Tensor, values: torch.Tensor) -> None:
        """Stores ``keys``/``values`` (``[kv_heads, m, head_dim]``) at positions ``[start, start + m)`` of ``layer``
        and sets its length to ``start + m``, dropping anything after.

        ``start`` may be below the length (overwriting a rolled-forward draft) but not above it: a gap would leave
        positions attention reads but nothing wrote. Raises ``ValueError`` for a gap or past the capacity.
        """
        end = start + keys.shape[1]
        if start > self._lengths[layer]:
            raise ValueError(f"layer {layer}: write at {start} leaves a gap after length {self._lengths[layer]}")
        if end > self.capacity:
            raise ValueError(f"layer {layer}: positions up to {end} exceed the cache capacity {self.capacity}")
        self.keys[layer, :, start:end] = keys
        self.values[layer, :, start:end] = values
        self._lengths[layer] = end

    def view(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The valid keys and values of ``layer``: views ``[kv_heads, length, head_dim]``, no copy."""
        end = self._lengths[layer]
        return self.keys[layer, :, :end], self.values[layer, :, :end]

    def truncate(self, length: int) -> None:
        """Rolls every layer back to at most ``length`` positions (layers already shorter are left as they are)."""
        if length < 0:
            raise ValueError(f"negative length {length}")
        self._lengths = [min(current, length) for current in self._lengths]

    def reset(self) -> None:
        """Empties the cache for a new sequence; the memory is kept."""
        self.truncate(0)
