"""`DiffusionLM`: one interface for every masked diffusion LM a sampler can drive."""

from __future__ import annotations

import inspect
from collections.abc import Sequence

import torch
from torch import nn

from .cuda_graph import GraphedForward
from .kv_cache import CacheView, KVCache


class DiffusionLM:
    """Wraps a torch module whose ``forward(input_ids, ...)`` returns ``.logits`` (B, L, V).

    ``logits(input_ids, attention_mask)`` returns logits aligned so that
    ``logits[:, i]`` predicts token i. For ``shift_logits`` models (Dream, which
    was initialised from an autoregressive model) the prediction for token i
    sits at position i-1 and is moved into place here, so samplers never care.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        mask_id: int,
        eos_token_ids: Sequence[int],
        shift_logits: bool = False,
        name: str = "",
    ) -> None:
        if not eos_token_ids:
            raise ValueError("eos_token_ids must name at least one token id, got an empty sequence")
        self.module = module
        self.mask_id = int(mask_id)
        self.eos_token_ids = tuple(int(t) for t in eos_token_ids)
        self.shift_logits = bool(shift_logits)
        self.name = name or type(module).__name__
        params = inspect.signature(module.forward).parameters
        self._takes_position_ids = "position_ids" in params or any(
            p.kind is p.VAR_KEYWORD for p in params.values()
        )
        self.graphs: GraphedForward | None = None  # recorded on first use of `logits_graphed`

    @property
    def device(self) -> torch.device:
        return next(self.module.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.module.parameters()).dtype

    @property
    def eos_id(self) -> int:
        """The id used to fill positions after the answer (the first EOS id)."""
        return self.eos_token_ids[0]

    @property
    def max_positions(self) -> int | None:
        """The most positions (prompt + answer) the model was built for, from its config; None when unknown."""
        cfg = getattr(self.module, "config", None)
        for key in ("max_sequence_length", "max_position_embeddings", "n_positions", "max_seq_len"):
            value = getattr(cfg, key, None)
            if isinstance(value, int) and not isinstance(value, bool) and value > 0:
                return value
        return None

    def check_length(self, prompt_tokens: int, gen_length: int) -> None:
        """Refuse, before any decoding, a prompt + answer longer than `max_positions` (`InputError` naming it)."""
        limit = self.max_positions
        if limit is not None and prompt_tokens + gen_length > limit:
            from ..errors import InputError

            raise InputError(
                f"prompt ({prompt_tokens} tokens) + gen_length ({gen_length}) = {prompt_tokens + gen_length} positions, "
                f"more than {self.name}'s maximum of {limit}; use a shorter prompt or a smaller gen_length"
            )

    @property
    def supports_cache(self) -> bool:
        """Whether the module takes a KV cache (dpbench's native LLaDA and Dream do)."""
        return bool(getattr(self.module, "supports_kv_cache", False))

    def forward_raw(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        cache: CacheView | None = None,
        positions: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """The module's own (for Dream: shifted) logits; ``positions=(lo, hi)``: of those positions only."""
        kwargs = {} if cache is None else {"cache": cache}
        if attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
            if self._takes_position_ids:
                # Left padding must not shift positions: a padded row sees what it sees alone.
                kwargs["position_ids"] = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return self._module_logits(input_ids, positions, **kwargs)

    def _module_logits(self, input_ids: torch.Tensor, logits_range: tuple[int, int] | None, **kwargs) -> torch.Tensor:
        """The module's logits; with ``logits_range=(lo, hi)`` of those positions only, computed
        only there by the modules that support it, sliced from all of them otherwise."""
        if logits_range is not None and self.supports_logits_range:
            return self.module(input_ids, logits_range=logits_range, **kwargs).logits
        out = self.module(input_ids, **kwargs).logits
        return out if logits_range is None else out[:, logits_range[0] : logits_range[1]]

    @property
    def supports_logits_range(self) -> bool:
        """Whether the module can run its output head on a range of positions only (the native models)."""
        return bool(getattr(self.module, "supports_logits_range", False))

    def logits(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        *,
        cache: CacheView | None = None,
        positions: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Aligned logits (B, L, V). With ``cache`` (a view without ``index``) the forward also
        stores every layer's keys/values in it; the logits are the same.

        ``positions=(lo, hi)``: only the logits of positions lo..hi-1, (B, hi - lo, V). The native
        models then run their output head on those positions only: at a 126k vocabulary the
        logits of every position would cost more memory than the rest of a forward.
        """
        if not self.shift_logits:
            return self.forward_raw(input_ids, attention_mask, cache=cache, positions=positions)
        # Position i-1 predicts token i; position 0 has no predecessor and keeps its own row.
        if positions is None:
            out = self.forward_raw(input_ids, attention_mask, cache=cache)
            return torch.cat([out[:, :1], out[:, :-1]], dim=1)
        lo, hi = positions
        if lo >= 1:
            return self.forward_raw(input_ids, attention_mask, cache=cache, positions=(lo - 1, hi - 1))
        out = self.forward_raw(input_ids, attention_mask, cache=cache, positions=(0, max(hi - 1, 1)))
        return torch.cat([out[:, :1], out[:, : hi - 1]], dim=1)

    def logits_graphed(self, input_ids: torch.Tensor, *, positions: tuple[int, int] | None = None) -> torch.Tensor:
        """`logits` (no attention mask) replayed from a CUDA graph recorded for this input shape
        on first use; the result is the graph's output buffer, overwritten by its next replay."""
        if self.graphs is None:
            self.graphs = GraphedForward(self)
        return self.graphs(input_ids, positions)

    def logits_window(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        index: torch.Tensor,
        fresh: torch.Tensor | None,
        *,
        cache: KVCache,
        rows: torch.Tensor | None = None,
        window_range: tuple[int, int] | None = None,
    ) -> torch.Tensor:
        """Aligned logits (A, W, V) at positions ``index`` (A, W), consecutive in each row.

        Only those query positions run through the model, against keys/values in
        ``cache`` (filled by an earlier `logits` call with it). Where ``fresh`` is
        True (None: everywhere) the new key/value replaces the cached one.
        ``input_ids`` and ``attention_mask`` are the full (A, N) sequences.
        ``window_range=(a, b)``: only the logits of window entries a..b-1 (A, b - a, V).
        """
        if not self.supports_cache:
            raise ValueError(f"{self.name} does not support a KV cache (only dpbench's native LLaDA and Dream do)")
        if self.shift_logits:
            # Token i is predicted at position i-1: run that query too, reading its cached key/value.
            first = (index[:, :1] - 1).clamp(min=0)
            dup = first == index[:, :1]  # only at position 0, which predicts itself
            if fresh is None:
                fresh = torch.ones_like(index, dtype=torch.bool)
            fresh = torch.cat([dup & fresh[:, :1], fresh], dim=1)
            index = torch.cat([first, index], dim=1)
        tokens = input_ids.gather(1, index)
        if attention_mask is None:
            positions = index
        else:
            positions = (attention_mask.long().cumsum(-1) - 1).clamp(min=0).gather(1, index)
        view = CacheView(cache, rows, index, fresh)
        # Entry j of the (for Dream: extended) window holds aligned row j, so a range carries over;
        # Dream's extra last entry predicts a position after the window, and no range reaches it.
        out = self._module_logits(tokens, window_range, attention_mask=attention_mask, position_ids=positions, cache=view)
        return out[:, :-1] if self.shift_logits and window_range is None else out

    def __repr__(self) -> str:
        return (
            f"DiffusionLM({self.name}, mask_id={self.mask_id}, eos={list(self.eos_token_ids)}, "
            f"shift_logits={self.shift_logits}, device={self.device}, dtype={self.dtype})"
        )
