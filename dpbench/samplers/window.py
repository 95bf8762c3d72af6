"""Window policies: which answer positions each sample may commit at the next step.

A policy keeps, on the host, where every sample of a batch stands and hands the
loop a `Window`: for the A samples still decoding, a range of answer positions
the rule looks at. `SingleBlock` is LLaDA's semi-autoregressive window (the
current block; the next block starts when this one has no mask left); a policy
with several blocks in flight (`multiblock.MultiBlock`) is the same interface.

Why the host: right after a forward has flushed the CPU caches a small tensor op
costs tens of microseconds (docs/speed.md, "The CPU step kernel"), more
than this Python bookkeeping, and what happens when a block ends (who leaves,
whether everybody shares a block) needs host values anyway. So counters are
Python lists and the few tensors a step needs are rebuilt only when windows
change. Every active sample takes one forward per iteration, so its NFE is the
iteration count ``t`` when it leaves.
"""

from __future__ import annotations

import torch


class _lazy:
    """`functools.cached_property` without its per-instance lock (taken on every first access
    before Python 3.12; a few microseconds per step that the loop can do without)."""

    def __init__(self, fn) -> None:
        self.fn, self.__doc__ = fn, fn.__doc__

    def __set_name__(self, owner, name: str) -> None:
        self.name = name

    def __get__(self, obj, cls=None):
        if obj is None:
            return self
        value = obj.__dict__[self.name] = self.fn(obj)  # later reads find it in the instance dict
        return value


class Window:
    """The positions the rule may commit at one step, for the active samples ``rows``.

    Row k (sample ``rows[k]``) sees answer positions ``lo[k] .. lo[k] + width - 1``;
    with ``hi`` given, only its first ``hi[k]`` of them belong to its window (windows
    of different widths share one rectangle). The view-or-copy rule lives here:
    `tokens` is a view of the sequence when every sample is active and all windows
    start at the same place (always so at batch 1), else a gathered copy that `put`
    writes back.
    """

    # What a policy may ask of the step beyond committing (multiblock does): per-row ranges for its
    # rule (``forced_ranges``), the masks left per ``chunk`` positions and the first position of an
    # ``eos`` id after the step; the step leaves them in ``counts`` and ``first_eos`` (host lists).
    forced_ranges: list[tuple[int, int]] | None = None
    chunk: int = 0
    eos: tuple[int, ...] = ()
    counts: list[list[int]] | None = None
    first_eos: list[int] | None = None

    def __init__(self, rows: list[int], lo: list[int], width: int, *, B: int, P: int, N: int,
                 device: torch.device, hi: list[int] | None = None, block: int | None = None) -> None:
        self.rows, self.lo, self.width, self.hi = rows, lo, width, hi
        self.block = block or width  # the block length that `blocks` numbers positions by
        self.B, self.P, self.N, self.dev = B, P, N, device
        self.index = None if len(rows) == B else torch.tensor(rows, dtype=torch.long, device=device)
        self.same = lo[0] if lo.count(lo[0]) == len(lo) else None  # the common start, if any
        self.view = self.same is not None and self.index is None
        self.span = (min(lo), max(lo) + width)  # answer positions covering every window
        self._slice: torch.Tensor | None = None
        self.memo: dict = {}  # what forward strategies derive from this window (cached-forward query windows)

    @_lazy
    def cols(self) -> torch.Tensor:
        """(A, W) answer positions of each row's window."""
        return torch.tensor(self.lo, device=self.dev)[:, None] + torch.arange(self.width, device=self.dev)

    @_lazy
    def blocks(self) -> torch.Tensor:
        """(A, W) the answer block each window position belongs to."""
        return self.cols // self.block

    @_lazy
    def _flat(self) -> torch.Tensor:
        """(A, W) positions in the flattened (B, N) sequence: one gather and one scatter per step."""
        rows = torch.tensor(self.rows, device=self.dev)[:, None]
        return rows * self.N + self.P + self.cols

    @_lazy
    def forced(self) -> torch.Tensor | None:
        """(A, 2) long: ``forced_ranges`` as a tensor (None if there are none)."""
        return None if self.forced_ranges is None else torch.tensor(self.forced_ranges, device=self.dev)

    @_lazy
    def limit(self) -> torch.Tensor | None:
        """(A, W) bool: inside the row's window (None: every position is)."""
        if self.hi is None:
            return None
        return torch.arange(self.width, device=self.dev) < torch.tensor(self.hi, device=self.dev)[:, None]

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """(A, W) tokens of the windows of the sequences ``x`` (B, N): a view (made once per window),
        or a copy for `put`."""
        if self.view:
            if self._slice is None:
                lo = self.P + self.same
                self._slice = x[:, lo : lo + self.width]
            return self._slice
        return x.take(self._flat)

    def put(self, x: torch.Tensor, tokens: torch.Tensor) -> None:
        """Write ``tokens`` (from `tokens`, committed in place) back into ``x`` unless they are a view of it."""
        if not self.view:
            x.put_(self._flat, tokens)

    def logits(self, logits: torch.Tensor, first: int, sel: torch.Tensor | None = None) -> torch.Tensor:
        """(A, W, V) window logits out of logits (A, S, V) of the active rows (or of the rows ``sel``
        picks from them) for answer positions ``first ..``: a slice when the windows share their
        start, else a gather."""
        if self.same is not None:
            lo = self.same - first
            return logits if lo == 0 and logits.shape[1] == self.width else logits[:, lo : lo + self.width]
        idx = self.cols if sel is None else self.cols[sel]
        idx = idx - first if first else idx
        return logits.gather(1, idx[..., None].expand(-1, -1, logits.shape[-1]))


class Policy:
    """What every window policy keeps: the iteration count, per-sample NFE and forward tokens,
    the active samples and their current `Window`."""

    def __init__(self, B: int, P: int, G: int, device: torch.device) -> None:
        self.B, self.P, self.G, self.dev = B, P, G, device
        self.t = 0
        self.nfe = [0] * B
        self.ftok = [0] * B  # query positions run through the model (cached forwards add to it)
        self.active = list(range(B))
        self.window: Window | None = None

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        """What the model sees this iteration: ``x`` itself, unless the policy shows the model
        something other than the tokens the rule commits into (multi-block early stop)."""
        return x

    def advance(self, left: list[bool], tokens: torch.Tensor, x: torch.Tensor, name: str) -> None:
        """After a step (``left``: per active row, masks left in its window; ``tokens``: the window's
        tokens as committed; ``x``: the sequences): count the iteration (``self.t += 1``), let
        finished samples leave (`finish`) and set the next ``self.window``."""
        raise NotImplementedError

    def steps(self) -> list[int] | None:
        """Steps each active sample has taken in its current block (baseline's schedule), if defined."""
        return None

    def first_forward(self) -> list[bool]:
        """Per active sample: whether a cached forward must refill its whole cache this step."""
        return [False] * len(self.active)

    def finish(self, done: list[int]) -> None:
        """Samples ``done`` leave: their NFE is the iterations run so far."""
        for i in done:
            self.nfe[i] = self.t
        gone = set(done)
        self.active = [i for i in self.active if i not in gone]

    def window_for(self, lo: list[int], width: int, hi: list[int] | None = None, block: int | None = None) -> Window | None:
        """The `Window` of the active samples starting at answer positions ``lo`` (None if none is left)."""
        if not self.active:
            return None
        return Window(self.active, lo, width, B=self.B, P=self.P, N=self.P + self.G, device=self.dev, hi=hi, block=block)


class SingleBlock(Policy):
    """LLaDA's semi-autoregressive window: each sample's current block.

    A block ends when it has no mask left; the sample moves to the next block at the next
    iteration, so samples of a batch may stand in different blocks. With ``early_stop`` a
    finished block ending in EOS ends the answer: the rest is filled with EOS.
    """

    def __init__(self, B: int, P: int, G: int, L: int, device: torch.device, *, early_stop: bool = False,
                 eos_ids: tuple[int, ...] = (), eos_fill: int | None = None) -> None:
        super().__init__(B, P, G, device)
        self.L, self.num_blocks = L, G // L
        self.early_stop, self.eos, self.eos_fill = early_stop, set(eos_ids), eos_fill
        self.block = [0] * B  # current block of each sample
        self.start = [0] * B  # iteration at which it began
        self._regroup()

    def _regroup(self) -> None:
        self.finish([i for i in self.active if self.block[i] >= self.num_blocks])
        self.window = self.window_for([self.block[i] * self.L for i in self.active], self.L)
        # Every step commits at least one mask, so a block ends within L steps of its start:
        # past this iteration some row's rule committed nothing and would loop forever.
        self.deadline = min((self.start[i] for i in self.active), default=0) + self.L

    def steps(self) -> list[int]:
        return [self.t - self.start[i] for i in self.active]

    def first_forward(self) -> list[bool]:
        return [self.start[i] == self.t for i in self.active]

    def advance(self, left: list[bool], tokens: torch.Tensor, x: torch.Tensor, name: str) -> None:
        """After a step: ``left`` says which rows still have masks in their block; rows whose block
        ended move on (a new window), finished samples leave."""
        self.t += 1
        if self.t >= self.deadline:
            self._check_progress(left, name)
        if all(left):
            return
        last = tokens[:, -1].tolist() if self.early_stop else None
        for k, (i, more) in enumerate(zip(self.active, left)):
            if more:
                continue
            self.block[i] += 1
            self.start[i] = self.t
            if last is not None and last[k] in self.eos:
                # A finished block ending in EOS means the answer is over: fill the rest, stop decoding it.
                x[i, self.P + self.block[i] * self.L :] = self.eos_fill
                self.block[i] = self.num_blocks
        self._regroup()

    def _check_progress(self, left: list[bool], name: str) -> None:
        if any(more and self.t - self.start[i] >= self.L for i, more in zip(self.active, left)):
            raise RuntimeError(
                f"sampler {name!r} committed nothing in some step: a block of {self.L} still has masks "
                f"after {self.L} steps; select() must pick at least one masked position per row"
            )
