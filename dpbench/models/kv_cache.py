"""Key/value caching for block decoding of bidirectional masked diffusion LMs.

A masked dLLM attends bidirectionally, so the keys and values of every
position change whenever any token changes: there is no exact cache. Fast-dLLM's
approximation keeps them anyway. At the first forward of a block, one full
forward stores each layer's keys/values (after RoPE) for every position; later
forwards of that block run only a *query window* of positions, recompute the
keys/values of the *fresh* positions among them and read everything else from
the cache:

- ``prefix``: fresh = the block and everything after it; the prompt and the
  finished blocks are read from the cache.
- ``dual``: fresh = the block only; the prompt, finished blocks and the
  still-masked positions after the block are read from the cache.
- ``dual`` with a lookahead of w (dpbench's addition): fresh = the block and
  the w positions after it; only the rest of the suffix is read from the cache.

`KVCache` holds the tensors of the whole batch; `CacheView` says what one
forward does with them (which batch rows, which query positions, which of them
are fresh). Native models (`LLaDAModelLM`, `DreamModel`) accept a ``cache=``
keyword and call `CacheView.update` once per layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch


@dataclass
class KVCache:
    """Per-layer keys and values, each (B, H_kv, N, head_dim), for B sequences of N positions."""

    keys: list[torch.Tensor | None] = field(default_factory=list)
    values: list[torch.Tensor | None] = field(default_factory=list)

    def _ensure(self, layer: int) -> None:
        while len(self.keys) <= layer:
            self.keys.append(None)
            self.values.append(None)

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self.keys + self.values if t is not None)


@dataclass
class CacheView:
    """How one forward pass uses a `KVCache`.

    rows:   (A,) which cache rows the A input sequences are; None = all rows, in order.
    index:  (A, W) absolute positions of the W query tokens; None = a full forward
            over all N positions that (re)stores every key/value.
    fresh:  (A, W) bool, for windowed forwards: store the newly computed key/value of
            that query position; elsewhere the cached one is used (the query still runs).
    """

    cache: KVCache
    rows: torch.Tensor | None = None
    index: torch.Tensor | None = None
    fresh: torch.Tensor | None = None

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Take this layer's new keys/values (A, H_kv, W, hd); return the ones to attend over (A, H_kv, N, hd)."""
        c = self.cache
        c._ensure(layer)
        if self.index is None:
            c.keys[layer] = _store(c.keys[layer], self.rows, k)
            c.values[layer] = _store(c.values[layer], self.rows, v)
            return k, v
        return self._merge(c.keys, layer, k), self._merge(c.values, layer, v)

    def _merge(self, store: list, layer: int, new: torch.Tensor) -> torch.Tensor:
        full = store[layer]
        if full is None:
            raise ValueError("windowed forward on an empty cache: run a full forward with this cache first")
        rows = self.rows
        mine = full if rows is None else full.index_select(0, rows)  # a copy when rows is a subset
        a, h, w, d = new.shape
        idx = self.index[:, None, :, None].expand(a, h, w, d)
        if self.fresh is not None:
            # Query positions that are not fresh keep their cached key/value.
            new = torch.where(self.fresh[:, None, :, None], new, mine.gather(2, idx))
        mine.scatter_(2, idx, new)
        if rows is not None:
            # Persist the fresh entries; the rest of these rows is unchanged.
            full[rows[:, None], :, self.index] = new.permute(0, 2, 1, 3)
        return mine


def _store(full: torch.Tensor | None, rows: torch.Tensor | None, new: torch.Tensor) -> torch.Tensor:
    if rows is None:
        return new
    if full is None:
        raise ValueError("the first full forward of a cache must cover all rows (rows=None)")
    full.index_copy_(0, rows, new)
    return full


def query_window(
    lo: Sequence[int], n: int, width: int | None, device: torch.device | str | None = None
) -> tuple[torch.Tensor, torch.Tensor | None, list[int]]:
    """Query positions (A, W), fresh flags and window starts for a cached step of rows whose
    blocks start at positions ``lo`` (host ints, one per row) in sequences of length ``n``.

    ``width=None`` (prefix cache): every row runs one shared window [min(lo), n), so the
    batch stays rectangular; a row further along runs a few extra queries whose keys/values
    stay cached, so it gets what it would get alone. ``width=w`` (dual cache: block +
    lookahead): w positions from each row's block start; near the end of the sequence the
    window slides left so every row runs w queries, and positions before a row's block then
    run as queries but keep their cached keys/values (not fresh), as under prefix.
    ``fresh`` is None when every query is fresh. Built from host ints: one op when the rows agree.
    """
    lo = list(lo)
    if width is None:
        starts, width = [min(lo)] * len(lo), n - min(lo)
    else:
        width = min(width, n)
        starts = [min(p, n - width) for p in lo]
    if starts.count(starts[0]) == len(starts):
        index = torch.arange(starts[0], starts[0] + width, device=device).expand(len(lo), width)
    else:
        index = torch.tensor(starts, device=device)[:, None] + torch.arange(width, device=device)
    fresh = None if starts == lo else index >= torch.tensor(lo, device=device)[:, None]
    return index, fresh, starts
