"""`multiblock` with ``cache=prefix``: d3LLM's delayed KV cache (``generate_multi_block_kv_cache``).

The keys/values of a finished prefix are frozen: the prompt and then each block, in order,
once it has been fully decoded for ``cache_delay`` iterations (the prompt counts as finished
at the start). A forward then runs only the positions from the frozen boundary to the end as
fresh queries and reads the boundary's left side from the cache. Per sample and iteration,
as the reference decides it:

1. blocks that became frozen this iteration: the forward runs from the old boundary and its
   keys/values for the newly frozen positions are the ones kept (then the boundary moves);
2. else, with a cache, no finished-but-not-yet-frozen ("stabilizing") block and no periodic
   refresh due (``refresh_interval``, 0 = never): a windowed forward from the boundary;
3. else a full forward (no cache yet, or a refresh: every key/value recomputed).

Like Fast-dLLM's caches this is an approximation (the frozen keys/values go stale as later
tokens change); docs/speed.md measures its accuracy cost. With a ``cache_delay`` longer than
any decode it never freezes anything and equals ``cache=none`` (the reference's defaults,
cache_delay_iter = refresh_interval = 10000, do exactly that). Where dpbench differs: a refresh
keeps the boundary where it was; the reference truncates its cache to the start of the latest
stabilizing block without moving its boundary, which feeds some positions twice into the next
cached forward when several blocks are stabilizing at once.
"""

from __future__ import annotations

import torch

from ..models.adapter import DiffusionLM
from ..models.kv_cache import KVCache
from .forward import full_forward, in_groups, take_rows
from .window import Window


class FrozenPrefix:
    """The forward strategy of ``multiblock`` with ``cache=prefix`` (see the module doc)."""

    def __init__(self, lm: DiffusionLM, attn: torch.Tensor | None, delay: int, refresh: int, B: int) -> None:
        self.lm, self.attn, self.delay, self.refresh, self.kv = lm, attn, delay, refresh, KVCache()
        self.edge = [0] * B  # frozen boundary (sequence positions) of each sample
        self.has_cache = [False] * B
        self.done_at: list[dict[int, int]] = [{-1: 0} for _ in range(B)]  # block -> iteration it was first seen done
        self.frozen: list[set[int]] = [set() for _ in range(B)]  # blocks whose keys/values are kept (-1: the prompt)

    def _plan(self, i: int, policy, nfe: int) -> tuple[bool, int]:
        """(full forward?, boundary after this forward) for sample i at iteration ``nfe``."""
        P, L = policy.P, policy.L
        done_at, frozen, cnt = self.done_at[i], self.frozen[i], policy.cnt[i]
        for b in policy.eos_made.get(i, ()):  # blocks the EOS fill created count as frozen already
            frozen.add(b)
            done_at.setdefault(b, policy.eos_t[i])
        edge, new_edge = self.edge[i], None
        for b in range(-1, policy.made[i]):
            start, end = (0, P) if b < 0 else (P + b * L, P + (b + 1) * L)
            if end <= edge:
                continue
            if b >= 0 and cnt[b] > 0:  # (the reference clamps its counters at 0; dpbench's may go below)
                break
            waited = nfe - done_at.setdefault(b, nfe)
            if waited >= self.delay and b not in frozen:
                frozen.add(b)
                new_edge = end
            elif waited < self.delay:
                break
        stabilizing = any(b not in frozen and (b < 0 or cnt[b] <= 0) for b in done_at)
        if new_edge is not None:
            return edge == 0, new_edge  # the first freeze of a sample is a full forward that keeps it all
        if self.has_cache[i] and not stabilizing and not (self.refresh and nfe % self.refresh == 0):
            return False, edge
        return True, edge

    def __call__(self, x: torch.Tensor, win: Window, policy) -> torch.Tensor:
        lm, nfe = self.lm, policy.t + 1
        plans = [self._plan(i, policy, nfe) for i in win.rows]

        def run(full: bool, sel, ks: list[int], idx) -> torch.Tensor:
            rows = [win.rows[k] for k in ks]
            xs, am = take_rows(x, self.attn, idx)
            if full:
                blk, n_query = full_forward(lm, self.kv, xs, am, win, idx, sel), x.shape[1]
            else:
                # Fresh queries from each sample's boundary; a row further along runs a few more,
                # reading their cached keys/values, so each gets what it would get alone.
                edges = [self.edge[i] for i in rows]
                lo = min(win.lo[k] for k in ks)
                hi = max(win.lo[k] for k in ks) + win.width
                q0 = min(min(edges), win.P + lo)
                index = torch.arange(q0, x.shape[1], device=x.device).expand(len(rows), -1)
                fresh = None if max(edges) <= q0 else index >= torch.tensor(edges, device=x.device)[:, None]
                logits = lm.logits_window(xs, am, index, fresh, cache=self.kv, rows=idx,
                                          window_range=(win.P + lo - q0, win.P + hi - q0))
                blk, n_query = win.logits(logits, lo, sel), index.shape[1] + lm.shift_logits
            for k, i in zip(ks, rows):
                policy.ftok[i] += n_query
                self.edge[i] = plans[k][1]
                self.has_cache[i] = self.has_cache[i] or plans[k][1] > 0
            return blk

        return in_groups([p[0] for p in plans], win, x.device, run)
