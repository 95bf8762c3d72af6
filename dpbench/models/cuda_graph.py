"""Replay the model's forward from a recorded CUDA graph (sampler option ``cuda_graph=True``).

At batch 1 a GPU forward is bound by the host launching kernels, not by the GPU:
on an H200 a 1.3B LLaDA forward takes ~10-14 ms eagerly and ~3-5 ms replayed from
a graph (results/bench/gpu/cuda_graphs.json). A graph is recorded once per input
shape and replays the same kernels on the same memory, so:

- inputs are copied into the graph's own buffers before each replay, and the
  returned logits are the graph's output buffer, overwritten by its next replay
  (the block loop reads them within the step);
- the output head runs on every answer position (one range per shape) rather than
  on the current block, so one graph serves every block of a decode;
- no attention mask: the mask path reads tensor values on the host (whether any
  position is padding), which a graph cannot record; padded batches run eagerly.

Recording costs two eager forwards (warm-up, as capture requires) and the capture
itself; at batch 1 every prompt length is a new shape. Graphs are kept per shape,
the most recent ``max_graphs``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .adapter import DiffusionLM

# Records fn: returns (replay, out), where replay() recomputes fn() into the tensor out.
Capture = Callable[[Callable[[], torch.Tensor]], tuple[Callable[[], object], torch.Tensor]]


def record_cuda_graph(fn: Callable[[], torch.Tensor], warmup: int = 2) -> tuple[Callable[[], object], torch.Tensor]:
    """`warm_up` then `capture`: replay() recomputes fn() into the returned output tensor."""
    warm_up(fn, warmup)
    return capture(fn)


def warm_up(fn: Callable[[], object], n: int) -> None:
    """Run ``fn`` n times on a side stream: lazy initialisations must not happen during capture."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        for _ in range(n):
            fn()
    torch.cuda.current_stream().wait_stream(side)


def capture(fn: Callable[[], torch.Tensor]) -> tuple[Callable[[], object], torch.Tensor]:
    """Record ``fn``'s kernels (not run); replay() runs them, writing the returned tensor."""
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()
    return graph.replay, out


@dataclass
class _Graph:
    replay: Callable[[], object]
    input_ids: torch.Tensor  # the buffer the recorded kernels read
    out: torch.Tensor  # the buffer they write


class GraphedForward:
    """`DiffusionLM.logits` without an attention mask, replayed from one recorded graph per input shape."""

    def __init__(self, lm: DiffusionLM, capture: Capture | None = None, max_graphs: int = 4) -> None:
        if capture is None and lm.device.type != "cuda":
            raise ValueError(f"cuda_graph=True needs a model on a CUDA device, got {lm.device}")
        if max_graphs < 1:
            raise ValueError(f"max_graphs must be >= 1, got {max_graphs}")
        self.lm, self.capture, self.max_graphs = lm, capture or record_cuda_graph, max_graphs
        self.graphs: OrderedDict[tuple, _Graph] = OrderedDict()
        self.recorded = 0  # graphs recorded so far (a new prompt length at batch 1 records one)

    def __call__(self, input_ids: torch.Tensor, positions: tuple[int, int] | None = None) -> torch.Tensor:
        key = (tuple(input_ids.shape), input_ids.dtype, positions)
        g = self.graphs.get(key)
        if g is None:
            g = self.graphs[key] = self._record(input_ids, positions)
            if len(self.graphs) > self.max_graphs:
                self.graphs.popitem(last=False)  # the least recently used; its memory goes with it
        else:
            self.graphs.move_to_end(key)
        g.input_ids.copy_(input_ids)
        g.replay()
        return g.out

    def _record(self, input_ids: torch.Tensor, positions: tuple[int, int] | None) -> _Graph:
        ids = input_ids.clone()
        # The class's method, not the instance attribute: a bench timer wrapped around the
        # instance's `logits` must not count the recording's forwards as decoding forwards.
        logits = type(self.lm).logits
        try:
            replay, out = self.capture(lambda: logits(self.lm, ids, positions=positions))
        except RuntimeError as err:
            raise RuntimeError(f"cuda_graph=True: {self.lm.name}'s forward could not be recorded in a CUDA graph "
                               f"(use cuda_graph=False): {err}") from err
        self.recorded += 1
        return _Graph(replay, ids, out)
