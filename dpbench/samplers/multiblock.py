"""`multiblock` (alias `d3llm`): pipelined multi-block entropy-threshold decoding (d3LLM).

The answer is still cut into blocks of ``block_length``, but a new block may start
before the previous one is finished (d3LLM's ``generate_multi_block``, hao-ai-lab/d3LLM,
commit e5bfcac; DESIGN.md §5). Blocks in flight are *semi-active* or *fully active*:

- before each forward, at most one block enters: when the last block in flight has
  progress (share of its positions committed) >= ``block_add_threshold`` or no mask
  left; it enters fully active if that block's progress >= ``decoded_token_threshold``;
  a semi-active block becomes fully active once its predecessor reaches
  ``decoded_token_threshold`` (the first block is fully active at once);
- the rule: every masked position from the first unfinished block to the end of the
  rightmost block in flight is committed if its entropy <= ``threshold``, and the
  single lowest-entropy one always; if the first fully active block with masks got no
  token from that, its lowest-entropy masked position is committed too.

With both block thresholds at 1 it is `dparallel`. ``early_stop`` is this decoder's own
(unlike the block samplers'): at the start of an iteration, if the answer holds an EOS,
every position after the first EOS becomes EOS, blocks after it are done and no block
enters; that iteration's candidates are the positions that were masked before the fill,
so just-filled positions can still be overwritten by the argmax (reproduced; the next
iteration's fill overwrites them again unless decoding ended). Per-block progress uses
the reference's counters, which that case can leave below the true mask count.

Where dpbench differs (docs/samplers.md): the mask token is never committed; NFE counts
forwards actually run (the reference counts one more for a last iteration that only fills
EOS); any EOS id counts as EOS (filled with the first); a decode that would need more than
``gen_length`` forwards raises instead of stopping silently after 10000; a batch gives
each sample what it gets alone (the reference decodes one prompt at a time).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import BlockConfig, BlockSampler, EngineConfig, StepInputs
from .kernel import KernelRule
from .registry import register_sampler
from .window import Policy


@dataclass
class MultiBlockConfig(BlockConfig):
    threshold: float = 0.5  # entropy, in nats
    # d3LLM's evaluation settings (utils_LLaDA/eval_llada.py, chat/chat_d3llm_llada.py).
    block_add_threshold: float = 0.1
    decoded_token_threshold: float = 0.95

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0 <= self.threshold < float("inf"):
            raise ValueError(f"threshold (an entropy, in nats) must be >= 0 and finite, got {self.threshold}")
        for name in ("block_add_threshold", "decoded_token_threshold"):
            v = getattr(self, name)
            if not 0 <= v <= 1:
                raise ValueError(f"{name} (a share of a block's positions) must be in [0, 1], got {v}")


@dataclass
class MultiBlockEngine(EngineConfig):
    # cache="prefix": d3LLM's delayed KV cache (multiblock_cache.py). A finished block's keys/values
    # are frozen after this many iterations (d3LLM's cache_delay_iter; its scripts use 1-2) ...
    cache_delay: int = 2
    # ... and every this many iterations all of them are recomputed (0: never; d3LLM's refresh_interval).
    refresh_interval: int = 0

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.cache not in ("none", "prefix"):
            raise ValueError(f"multiblock supports cache='none' or 'prefix' (d3LLM's delayed cache), got cache={self.cache!r}")
        if self.cache_delay < 0 or self.refresh_interval < 0:
            raise ValueError(f"cache_delay and refresh_interval must be >= 0, got {self.cache_delay} and {self.refresh_interval}")


class MultiBlock(Policy):
    """The window policy of `multiblock`: several blocks in flight per sample (see the module doc).

    Per sample, on the host: ``cnt[b]`` the reference's mask counter of block b, ``full[b]``
    whether it is fully active, ``made`` how many blocks have entered, ``real[b]`` the true
    number of masks (from the tokens after each step), ``eos`` the first EOS position.
    """

    def __init__(self, B: int, P: int, G: int, L: int, device: torch.device, cfg: MultiBlockConfig,
                 mask_id: int, eos_ids: tuple[int, ...], eos_fill: int) -> None:
        super().__init__(B, P, G, device)
        self.L, self.nb, self.cfg, self.mask_id, self.eos_fill = L, G // L, cfg, mask_id, eos_fill
        self.eos_ids = tuple(eos_ids)
        self.cnt = [[L] + [0] * (self.nb - 1) for _ in range(B)]
        self.full = [[1.0 >= cfg.decoded_token_threshold] + [False] * (self.nb - 1) for _ in range(B)]
        self.made = [1] * B
        self.real = [[L] * self.nb for _ in range(B)]
        self.eos: list[int | None] = [None] * B
        self.split = [False] * B  # the first EOS is new: this iteration fills after it (see model_input)
        self.refill = [False] * B  # the last iteration was a split fill: fill again before the forward
        self._fill: dict[int, torch.Tensor] = {}  # sample -> masks after its first EOS before this iteration's fill
        self.eos_made: dict[int, list[int]] = {}  # sample -> blocks its EOS fill created (done at once)
        self.eos_t: dict[int, int] = {}  # sample -> the iteration of that fill
        self._key: tuple | None = None  # what the current window was built from (reused while it holds)
        self._prepare()

    # -- iteration start ----------------------------------------------------------------
    def _prepare(self, x: torch.Tensor | None = None) -> None:
        """The reference's iteration start for every active sample, then the window."""
        done, lo, hi, forced = [], [], [], []
        self._fill, self._touched = {}, False
        for i in self.active:
            if self.cfg.early_stop and self.eos[i] is not None and not self._early_stop(i, x):
                done.append(i)  # nothing left to decode once the fill is done: no forward
                continue
            self._activate(i)
            if self.eos[i] is None and self.made[i] < self.nb:
                self._maybe_add(i)
            w = self._span(i)
            lo.append(w[0]), hi.append(w[1]), forced.append(w[2])
        self.finish(done)
        if not self.active:
            self.window = None
            return
        W = max(h - l for l, h in zip(lo, hi))
        slid = [min(a, self.G - W) for a in lo]  # every row runs W positions; near the end the window slides left
        ends = [h - s for h, s in zip(hi, slid)]
        f = [(a - s, b - s) if a is not None else (0, 0) for (a, b), s in zip(forced, slid)]
        key = (tuple(self.active), tuple(slid), W, tuple(ends), tuple(f))
        if key == self._key and not self._touched and not self._fill:
            return  # the same window as last iteration, and only the step changed its tokens: keep it
        self._key = key
        win = self.window = self.window_for(slid, W, None if all(e == W for e in ends) else ends, block=self.L)
        win.forced_ranges = f if any(b > a for a, b in f) else None
        win.chunk, win.eos = self.L, self.eos_ids if self.cfg.early_stop else ()

    def _activate(self, i: int) -> None:
        cnt, full, L, thr = self.cnt[i], self.full[i], self.L, self.cfg.decoded_token_threshold
        for b in range(self.made[i]):
            prev = 1.0 if b == 0 else 1 - cnt[b - 1] / L
            if not full[b] and prev >= thr:
                full[b] = True

    def _maybe_add(self, i: int) -> None:
        cnt, L, last = self.cnt[i], self.L, self.made[i] - 1
        progress = 1 - cnt[last] / L
        if progress >= self.cfg.block_add_threshold or cnt[last] == 0:
            b = self.made[i]
            cnt[b] = self.real[i][b]
            self.full[i][b] = progress >= self.cfg.decoded_token_threshold
            self.made[i] += 1

    def _span(self, i: int) -> tuple[int, int, tuple[int | None, int | None]]:
        """(first answer position of the window, its end, the forced block's range or (None, None))."""
        cnt, full, real, L = self.cnt[i], self.full[i], self.real[i], self.L
        right = max(b for b in range(self.made[i]) if full[b] or cnt[b] > 0)
        first = next(b for b in range(right + 1) if real[b] > 0)
        f = next((b for b in range(self.made[i]) if full[b] and cnt[b] > 0), None)
        return first * L, (right + 1) * L, (None, None) if f is None else (f * L, (f + 1) * L)

    def _early_stop(self, i: int, x: torch.Tensor) -> bool:
        """The reference's EOS handling at an iteration start; False if no mask is left before the EOS."""
        e, L, P = self.eos[i], self.L, self.P
        eb = e // L  # the block holding the first EOS
        if self.split[i]:
            # New first EOS: masks may follow it. They stay candidates of this iteration; the model
            # sees them filled (model_input) and the fill is applied after the step (advance).
            self._fill[i] = x[i, P + e + 1 :] == self.mask_id
            before = int((x[i, P + eb * L : P + e + 1] == self.mask_id).sum())
        else:
            if self.refill[i]:  # tokens committed after the EOS last iteration become EOS again
                x[i, P + e + 1 :] = self.eos_fill
                self.refill[i], self._touched = False, True
            before = self.real[i][eb]
        cnt, full = self.cnt[i], self.full[i]
        for b in range(eb + 1, self.nb):
            if b >= self.made[i]:  # blocks after the EOS enter done (and fully active)
                cnt[b], full[b] = 0, True
                self.eos_made.setdefault(i, []).append(b)
                self.eos_t.setdefault(i, self.t + 1)
            elif cnt[b] != 0:
                cnt[b], full[b] = 0, True
        self.made[i] = self.nb
        if before != cnt[eb]:
            cnt[eb] = before
            if before == 0:
                full[eb] = True
        if sum(self.real[i][:eb]) + before == 0:
            if self.split[i]:
                x[i, P + e + 1 :] = self.eos_fill
            return False
        return True

    def model_input(self, x: torch.Tensor) -> torch.Tensor:
        if not self._fill:
            return x
        shown = x.clone()  # a split-fill iteration: the model sees the EOS fill, the rule the masks
        for i in self._fill:
            shown[i, self.P + self.eos[i] + 1 :] = self.eos_fill
        return shown

    # -- after the step -----------------------------------------------------------------------
    def advance(self, left: list[bool], tokens: torch.Tensor, x: torch.Tensor, name: str) -> None:
        self.t += 1
        win, L = self.window, self.L
        done = []
        for k, i in enumerate(self.active):
            b0 = win.lo[k] // L
            row, cnt, real = win.counts[k], self.cnt[i], self.real[i]
            moved = 0
            for c in range(win.width // L):
                b, now = b0 + c, row[c]
                taken = real[b] - now
                moved += taken
                if taken and cnt[b] > 0:
                    cnt[b] -= taken
                real[b] = now
            if moved == 0:
                raise RuntimeError(f"sampler {name!r} committed nothing for sample {i} in a step")
            if i in self._fill:  # apply this iteration's fill, keeping what the step committed
                e = self.eos[i]
                tail = x[i, self.P + e + 1 :]
                x[i, self.P + e + 1 :] = torch.where(self._fill[i] & (tail != self.mask_id), tail, self.eos_fill)
                eb = e // L
                real[eb] = int((x[i, self.P + eb * L : self.P + e + 1] == self.mask_id).sum())
                for b in range(eb + 1, self.nb):
                    real[b] = 0
                self.split[i], self.refill[i] = False, True
            if self.cfg.early_stop and win.first_eos[k] < win.width:
                e = win.lo[k] + win.first_eos[k]
                if self.eos[i] is None or e < self.eos[i]:
                    self.eos[i], self.split[i], self.refill[i] = e, True, False
            if sum(real) == 0:
                done.append(i)
            elif self.t >= self.G:
                raise RuntimeError(f"sampler {name!r} needs more than gen_length={self.G} forwards for sample {i}")
        self.finish(done)
        self._prepare(x)


@register_sampler("multiblock", aliases=("d3llm", "multi-block", "multi_block"))
class MultiBlockSampler(BlockSampler):
    """d3LLM: several blocks in flight; commit masked tokens with entropy <= threshold across them."""

    Config = MultiBlockConfig
    Engine = MultiBlockEngine
    selects_masked_only = True  # positions outside s.is_mask get entropy inf (every row has a candidate)

    def forward_strategy(self, lm, attn, B: int):
        eng = self.engine
        if eng.cache == "prefix":
            from .multiblock_cache import FrozenPrefix

            return FrozenPrefix(lm, attn, eng.cache_delay, eng.refresh_interval, B)
        return super().forward_strategy(lm, attn, B)

    def window_width(self) -> int:
        return self.config.gen_length

    def kernel_rule(self) -> KernelRule:
        return KernelRule("entropy_threshold_forced", self.config.threshold)

    def window_policy(self, B: int, P: int, lm) -> MultiBlock:
        cfg = self.config
        return MultiBlock(B, P, cfg.gen_length, cfg.block_length, lm.device, cfg, lm.mask_id, lm.eos_token_ids, lm.eos_id)

    def select(self, s: StepInputs) -> torch.Tensor:
        h = torch.where(s.is_mask, s.entropy, float("inf"))
        commit = (h <= self.config.threshold).scatter_(-1, h.argmin(-1, keepdim=True), True)
        forced = s.window.forced if s.window is not None else None
        if forced is None:
            return commit
        # The first fully active block with masks gets its lowest-entropy position if it got nothing.
        j = torch.arange(h.shape[-1], device=h.device)
        inside = (j >= forced[:, :1]) & (j < forced[:, 1:])
        need = ~(commit & inside).any(-1, keepdim=True) & (forced[:, 1:] > forced[:, :1])
        best = torch.where(inside, h, float("inf")).argmin(-1, keepdim=True)
        pick = need & (j == best)
        if s.temperature > 0:  # the reference commits a plain argmax there, without sampling noise
            s.x0 = torch.where(pick, s.greedy, s.x0)
        return commit | pick
