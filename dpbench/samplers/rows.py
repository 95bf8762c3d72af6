"""State of the block loop (`BlockSampler.generate`): where each sample stands, and cached forwards.

Kept apart from the loop so it reads top to bottom; nothing here is public API.
"""

from __future__ import annotations

import torch

from ..models.adapter import DiffusionLM
from ..models.kv_cache import CacheView, KVCache, query_window


class Rows:
    """Where each sample of a batch stands, kept on the host.

    After a forward has flushed the CPU caches, a small tensor op costs 10-20 us,
    more than this Python bookkeeping, and what happens when a block ends (which
    samples leave, whether all share a block) needs host values anyway. So the
    per-sample counters are Python lists, and the few tensors a step needs are
    rebuilt only when a block ends. Every active sample takes one forward per
    iteration, so its NFE is the iteration count ``t`` when it leaves and its
    step within the block is ``t`` minus the iteration its block began.
    """

    def __init__(self, B: int, P: int, L: int, num_blocks: int, dev: torch.device) -> None:
        self.B, self.P, self.L, self.num_blocks, self.dev = B, P, L, num_blocks, dev
        self.t = 0
        self.block = [0] * B  # current block of each sample
        self.start = [0] * B  # iteration at which it began
        self.nfe = [0] * B
        self.ftok = [0] * B  # query positions run through the model (cached forwards)
        self.active = list(range(B))
        self.regroup()

    def regroup(self) -> None:
        """After blocks ended: drop finished samples, rebuild what the next steps index with."""
        for i in self.active:
            if self.block[i] >= self.num_blocks:
                self.nfe[i] = self.t
        self.active = act = [i for i in self.active if self.block[i] < self.num_blocks]
        self.index = None if len(act) in (0, self.B) else torch.tensor(act, dtype=torch.long, device=self.dev)
        self.blocks = [self.block[i] for i in act]
        # The block every active sample is in (None if they differ): then a block is a plain slice.
        self.same = self.blocks[0] if act and self.blocks.count(self.blocks[0]) == len(act) else None
        # The sequence positions spanning every active block: the only logits a step needs.
        self.span = (self.P + min(self.blocks, default=0) * self.L, self.P + (max(self.blocks, default=0) + 1) * self.L)
        # Every step commits at least one mask, so a block ends within L steps of its start:
        # past this iteration some row's select() committed nothing and would loop forever.
        self.deadline = min((self.start[i] for i in act), default=0) + self.L
        self._cols: torch.Tensor | None = None
        self._view: torch.Tensor | None = None
        self.memo: dict = {}  # cached-forward windows per group of rows, valid until the next regroup

    @property
    def cols(self) -> torch.Tensor:
        """(A, L) answer positions of each active sample's current block."""
        if self._cols is None:
            b = torch.tensor(self.blocks, dtype=torch.long, device=self.dev)
            self._cols = b[:, None] * self.L + torch.arange(self.L, device=self.dev)
        return self._cols

    def block_of(self, t: torch.Tensor, offset: int, sel: torch.Tensor | None = None) -> torch.Tensor:
        """Each row's current block of ``t`` (A, offset + G[, V]), or of the rows ``sel`` picks
        from the active ones: a slice if all share one block."""
        if self.same is not None:
            lo = offset + self.same * self.L
            return t if lo == 0 and t.shape[1] == self.L else t[:, lo : lo + self.L]
        idx = self.cols if sel is None else self.cols[sel]
        idx = idx + offset if offset else idx
        return t.gather(1, idx if t.dim() == 2 else idx[..., None].expand(-1, -1, t.shape[-1]))

    def answer_block(self, answer: torch.Tensor) -> torch.Tensor:
        """The current blocks of ``answer`` (every sample's row, in order); when they share one
        block this is a view of it, so it is taken once per grouping, not once per step."""
        if self.same is None:
            return self.block_of(answer, 0)
        if self._view is None:
            self._view = self.block_of(answer, 0)
        return self._view

    def steps(self) -> list[int]:
        """Steps each active sample has taken in its current block."""
        return [self.t - self.start[i] for i in self.active]

    def check_progress(self, left: list[bool], sampler: str) -> None:
        """Raise if a row still has masks ``left`` after L steps in its block (a step committed nothing)."""
        if any(more and self.t - self.start[i] >= self.L for i, more in zip(self.active, left)):
            raise RuntimeError(
                f"sampler {sampler!r} committed nothing in some step: a block of {self.L} still has masks "
                f"after {self.L} steps; select() must pick at least one masked position per row"
            )

    def end_blocks(self, left: list[bool]) -> list[tuple[int, int]]:
        """Move samples whose block has no mask ``left`` to their next block; returns (row, sample) of each."""
        ended = [(k, i) for k, (i, more) in enumerate(zip(self.active, left)) if not more]
        for _, i in ended:
            self.block[i] += 1
            self.start[i] = self.t
        return ended


def take_rows(x: torch.Tensor, attn: torch.Tensor | None, idx: torch.Tensor | None):
    """``x`` and ``attn`` (which may be None) at rows ``idx``; None: every row, nothing indexed."""
    if idx is None:
        return x, attn
    return x[idx], None if attn is None else attn[idx]


class CachedForward:
    """Block logits with a KV cache (``cache=prefix|dual``; see models/kv_cache.py).

    Samples at a block's first step get a full forward that (re)fills their cache
    rows; the others a windowed forward against it (``lookahead``: None = prefix
    cache, else dual with that many fresh positions after the block). Query
    positions run are added to ``rows.ftok``.
    """

    def __init__(self, lm: DiffusionLM, x: torch.Tensor, attn: torch.Tensor | None, mode: str, lookahead: int) -> None:
        self.lm, self.x, self.attn, self.kv = lm, x, attn, KVCache()
        self.lookahead = lookahead if mode == "dual" else None  # None: prefix cache

    def block_logits(self, rows: Rows) -> torch.Tensor:
        """(A, L, V) logits of each active sample's current block."""
        lm, x = self.lm, self.x
        first = [rows.start[i] == rows.t for i in rows.active]
        A, n_first = len(first), sum(first)
        out = None
        for group in (True, False):
            n = n_first if group else A - n_first
            if n == 0:
                continue
            if n == A:  # the whole step is one forward
                sel, members, idx = None, rows.active, rows.index
            else:
                sel = torch.tensor([f == group for f in first], device=x.device)
                members = [i for i, f in zip(rows.active, first) if f == group]
                idx = torch.tensor(members, dtype=torch.long, device=x.device)
            xs, am = take_rows(x, self.attn, idx)
            if group:
                logits = lm.logits(xs, am, cache=CacheView(self.kv, idx), positions=rows.span)
                blk = rows.block_of(logits, rows.P - rows.span[0], sel)
                n_query = x.shape[1]
            else:
                index, fresh, at = self._window(rows, members)
                if isinstance(at, int):  # the same place in every row: only those logits
                    keep = None if index.shape[1] == rows.L else (at, at + rows.L)
                    blk = lm.logits_window(xs, am, index, fresh, cache=self.kv, rows=idx, window_range=keep)
                else:
                    logits = lm.logits_window(xs, am, index, fresh, cache=self.kv, rows=idx)
                    blk = logits.gather(1, at[..., None].expand(-1, -1, logits.shape[-1]))
                n_query = index.shape[1] + lm.shift_logits
            for i in members:
                rows.ftok[i] += n_query
            if sel is None:
                return blk
            if out is None:
                out = blk.new_empty((A,) + blk.shape[1:])
            out[sel] = blk
        return out

    def _window(self, rows: Rows, members: list[int]):
        """Query positions, fresh flags and where the block sits in the window's logits
        (an int if the same for every row, else a gather index); fixed until the next regroup."""
        key = tuple(members)
        if key not in rows.memo:
            L, dev = rows.L, self.x.device
            lo = [rows.P + rows.block[i] * L for i in members]  # block starts, on the host
            width = None if self.lookahead is None else L + self.lookahead  # None: prefix cache
            index, fresh, starts = query_window(lo, self.x.shape[1], width, dev)
            at = [p - s for p, s in zip(lo, starts)]
            same = at.count(at[0]) == len(at)
            rows.memo[key] = index, fresh, at[0] if same else torch.tensor(at, device=dev)[:, None] + torch.arange(L, device=dev)
        return rows.memo[key]
