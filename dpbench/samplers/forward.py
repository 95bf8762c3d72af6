"""Forward strategies: how the model's logits for a step's `Window` are computed.

Chosen once per `generate` call (`forward_strategy`); each is a callable
``(x, window, policy) -> (A, W, V)`` logits of the window positions:

- `plain`: one forward of the active rows, the output head run on the positions
  the windows span only (at a 126k vocabulary the logits of every position would
  cost more memory than the rest of the forward);
- `graphed`: the same forward replayed from a CUDA graph (``cuda_graph=True``,
  unpadded batches; models/cuda_graph.py), eager whenever some samples have left;
- `CachedBlocks`: Fast-dLLM's KV cache for block windows (``cache=prefix|dual``,
  models/kv_cache.py): samples at a block's first step get a full forward that
  refills their cache rows, the others a windowed forward against it; each still
  costs one NFE and gets what it would get alone.
"""

from __future__ import annotations

from functools import partial

import torch

from ..models.adapter import DiffusionLM
from ..models.kv_cache import CacheView, KVCache, query_window
from .window import Policy, Window


def take_rows(x: torch.Tensor, attn: torch.Tensor | None, idx: torch.Tensor | None):
    """``x`` and ``attn`` (which may be None) at rows ``idx``; None: every row, nothing indexed."""
    if idx is None:
        return x, attn
    return x[idx], None if attn is None else attn[idx]


def plain(lm: DiffusionLM, attn: torch.Tensor | None, x: torch.Tensor, win: Window, policy: Policy) -> torch.Tensor:
    xs, am = take_rows(x, attn, win.index)
    lo, hi = win.span
    return win.logits(lm.logits(xs, am, positions=(win.P + lo, win.P + hi)), lo)


def graphed(lm: DiffusionLM, x: torch.Tensor, win: Window, policy: Policy) -> torch.Tensor:
    if win.index is not None:  # some samples have left: a new shape, run eagerly
        return plain(lm, None, x, win, policy)
    # One recorded graph for every window: the output head on the whole answer.
    return win.logits(lm.logits_graphed(x, positions=(win.P, win.P + policy.G)), 0)


class CachedBlocks:
    """Block logits with a KV cache (``cache=prefix|dual``; see models/kv_cache.py).

    ``lookahead``: None = prefix cache (the window and everything after it are fresh
    queries), else dual with that many fresh positions after the window. Query
    positions run are added to ``policy.ftok``.
    """

    def __init__(self, lm: DiffusionLM, attn: torch.Tensor | None, lookahead: int | None) -> None:
        self.lm, self.attn, self.kv, self.lookahead = lm, attn, KVCache(), lookahead

    def __call__(self, x: torch.Tensor, win: Window, policy: Policy) -> torch.Tensor:
        lm = self.lm

        def run(full: bool, sel, ks: list[int], idx) -> torch.Tensor:
            xs, am = take_rows(x, self.attn, idx)
            if full:
                blk, n_query = full_forward(lm, self.kv, xs, am, win, idx, sel), x.shape[1]
            else:
                index, at = self._queries(x, win, sel, [win.rows[k] for k in ks])
                if isinstance(at, int):  # the same place in every row: only those logits
                    keep = None if index[0].shape[1] == win.width else (at, at + win.width)
                    blk = lm.logits_window(xs, am, *index, cache=self.kv, rows=idx, window_range=keep)
                else:
                    logits = lm.logits_window(xs, am, *index, cache=self.kv, rows=idx)
                    blk = logits.gather(1, at[..., None].expand(-1, -1, logits.shape[-1]))
                n_query = index[0].shape[1] + lm.shift_logits
            for k in ks:
                policy.ftok[win.rows[k]] += n_query
            return blk

        return in_groups(policy.first_forward(), win, x.device, run)

    def _queries(self, x: torch.Tensor, win: Window, sel, members: list[int]):
        """Query positions and fresh flags, and where the window sits in the queries' logits (an int
        if the same for every row, else a gather index); fixed while the window is."""
        key = tuple(members)
        if key not in win.memo:
            W, dev = win.width, x.device
            mine = set(members)
            lo = [win.P + p for p, i in zip(win.lo, win.rows) if i in mine]
            width = None if self.lookahead is None else W + self.lookahead  # None: prefix cache
            index, fresh, starts = query_window(lo, x.shape[1], width, dev)
            at = [p - s for p, s in zip(lo, starts)]
            same = at.count(at[0]) == len(at)
            win.memo[key] = (index, fresh), at[0] if same else torch.tensor(at, device=dev)[:, None] + torch.arange(W, device=dev)
        return win.memo[key]


def full_forward(lm: DiffusionLM, kv: KVCache, xs, am, win: Window, idx, sel) -> torch.Tensor:
    """A forward over whole sequences that (re)fills their rows of the cache ``kv``; the window logits."""
    lo, hi = win.span
    logits = lm.logits(xs, am, cache=CacheView(kv, idx), positions=(win.P + lo, win.P + hi))
    return win.logits(logits, lo, sel)


def in_groups(full: list[bool], win: Window, device, run) -> torch.Tensor:
    """Window logits (A, W, V) of a cached step whose rows take different forwards: ``run(full, sel,
    ks, idx)`` for the rows that need a full forward (``full[k]``) and then for the others; ``ks``
    are their positions among the active rows, ``sel`` selects them (None: every row), ``idx``
    their sample indices (None: every sample). One forward each, so each row costs one NFE."""
    A, out = len(full), None
    for group in (True, False):
        ks = [k for k, f in enumerate(full) if f == group]
        if not ks:
            continue
        if len(ks) == A:  # the whole step is one forward
            return run(group, None, ks, win.index)
        sel = torch.tensor([f == group for f in full], device=device)
        blk = run(group, sel, ks, torch.tensor([win.rows[k] for k in ks], dtype=torch.long, device=device))
        if out is None:
            out = blk.new_empty((A,) + blk.shape[1:])
        out[sel] = blk
    return out


def forward_strategy(lm: DiffusionLM, attn: torch.Tensor | None, engine) -> callable:
    """The forward of this call, chosen once from the engine settings (see the module doc)."""
    if engine.cache != "none":
        return CachedBlocks(lm, attn, engine.dual_lookahead if engine.cache == "dual" else None)
    if engine.cuda_graph and attn is None:  # a padded batch runs eagerly (see models/cuda_graph.py)
        return partial(graphed, lm)
    return partial(plain, lm, attn)
