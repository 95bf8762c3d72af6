"""The CPU step kernel: a built-in sampler's whole step in one C call (kernels/step.c).

At batch 1 on a CPU the dozen small tensor ops of a step (softmax, entropy, argmax,
threshold, commit, mask check) each pay the dispatcher's cost, and right after a model
forward that cost is high because the forward has evicted their code from the caches.
The kernel does the same work for every row of the step in one call. What it saves,
against the tensor path and against `torch.compile` of the tensor path, is measured side
by side by scripts/measure_step_paths.py (figures in docs/speed.md, "The CPU step kernel").

It implements the selection rules of the built-in samplers (`KernelRule`); a
sampler says which one it follows with `BlockSampler.kernel_rule`. The tensor path
(`StepInputs` + `select`) stays the reference: tests check that both decode the
same tokens with the same NFE, and it runs wherever the kernel does not apply
(GPU, temperature > 0, traces, samplers without a rule).

The C source is compiled on first use with the system's C compiler (``$CC``, else
``cc``; plain -O2, no fast-math) into ``$DPBENCH_CACHE_DIR`` (default
``~/.cache/dpbench``), keyed by a hash of source and flags. ``DPBENCH_STEP_KERNEL``:
``auto`` (default: use it if it builds, else warn once and use the tensor path),
``off`` (never), ``on`` (fail if it cannot be built).
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import subprocess
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import torch

SOURCE = Path(__file__).with_name("kernels") / "step.c"
# The one definition of the rule ids and the block limit; step.c receives them as -D flags.
RULES = {"entropy_threshold": 1, "confidence_threshold": 2, "top_k_confidence": 3, "entropy_bound": 4,
         "entropy_threshold_forced": 5}
MAX_BLOCK = 1024  # positions of one row's block the kernel's stack buffers hold
FLAGS = ("-O2", "-shared", "-fPIC", *(f"-D{k.upper()}={v}" for k, v in RULES.items()), f"-DMAX_BLOCK={MAX_BLOCK}")
MODES = ("auto", "on", "off")


@dataclass(frozen=True)
class KernelRule:
    """A selection rule the kernel implements (see kernels/step.c for the exact semantics).

    - ``entropy_threshold``: commit masked positions with entropy <= ``param``, and the lowest;
    - ``confidence_threshold``: confidence >= ``param``, and the highest;
    - ``top_k_confidence``: the k most confident, k = ``k_schedule[step in block]``;
    - ``entropy_bound``: lowest entropies first while their sum less the largest <= ``param``;
    - ``entropy_threshold_forced``: as ``entropy_threshold``, and a per-row forced range that got
      nothing gets its lowest-entropy masked position (``multiblock``).
    """

    kind: str
    param: float = 0.0
    k_schedule: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.kind not in RULES:
            raise ValueError(f"kernel rule must be one of {', '.join(RULES)}, got {self.kind!r}")
        if (self.kind == "top_k_confidence") != bool(self.k_schedule):
            raise ValueError(f"k_schedule goes with (and only with) top_k_confidence, got {self.kind!r} with {self.k_schedule}")


class StepKernel:
    """The loaded kernel; call it once per step on each row's current block."""

    def __init__(self, lib: ctypes.CDLL) -> None:
        fn = lib.dp_step
        i64, ptr = ctypes.c_int64, ctypes.c_void_p
        fn.argtypes = [ptr, i64, i64, i64, i64, i64, ptr, i64, i64, ctypes.c_int32, ctypes.c_double, ptr, ptr,
                       ptr, ptr, i64, ptr, ptr, i64, ptr]
        fn.restype = i64
        self._fn = fn

    @staticmethod
    def accepts(tokens: torch.Tensor, block_length: int) -> bool:
        """Whether the kernel can run a loop over these tokens (CPU int64 ids, a block it can hold)."""
        return tokens.device.type == "cpu" and tokens.dtype == torch.long and 0 < block_length <= MAX_BLOCK

    def __call__(
        self, logits: torch.Tensor, tokens: torch.Tensor, mask_id: int, rule: KernelRule, steps: list[int] | None = None,
        *, hi: list[int] | None = None, forced: list[tuple[int, int]] | None = None, chunk: int = 0,
        eos: tuple[int, ...] = (),
    ):
        """Commit this step's tokens into ``tokens`` (A, L) (a view, written in place) from ``logits``
        (A, L, V); returns, per row, whether masks are left. ``steps`` (each row's step in its block)
        is needed by ``top_k_confidence`` only. ``hi``: per row, only positions below it may be
        committed; ``forced``: per row, ``entropy_threshold_forced``'s range. With ``chunk`` or
        ``eos`` it returns ``(left, counts, first_eos)``: masks left per ``chunk`` positions of each
        row, and each row's first position holding an ``eos`` id (L if none)."""
        A, L, V = logits.shape
        if logits.dtype != torch.float32:
            logits = logits.float()  # bf16 / fp16 models on a CPU: one extra op
        if logits.stride(2) != 1:
            logits = logits.contiguous()
        if tokens.shape != (A, L) or tokens.dtype != torch.long or not (tokens.is_cpu and logits.is_cpu):
            raise ValueError(f"the step kernel takes CPU logits (A, L, V) and int64 tokens (A, L), got {tuple(logits.shape)} "
                             f"on {logits.device} and {tuple(tokens.shape)} {tokens.dtype} on {tokens.device}")
        if tokens.stride(1) != 1:
            raise ValueError(f"tokens must be contiguous along the block, got strides {tokens.stride()}")
        if chunk and L % chunk:
            raise ValueError(f"chunk must divide the window ({L}), got {chunk}")
        i64s = ctypes.c_int64
        k = None
        if rule.k_schedule:
            if steps is None:
                raise ValueError("top_k_confidence needs each row's step in its block, got steps=None")
            sched, last = rule.k_schedule, len(rule.k_schedule) - 1
            k = (i64s * A)(*(sched[min(s, last)] for s in steps))
        left = (ctypes.c_int8 * A)()  # per call: threads may decode side by side
        lim = None if hi is None else (i64s * A)(*hi)
        rng = None if forced is None else (i64s * (2 * A))(*(v for pair in forced for v in pair))
        counts = (i64s * (A * (L // chunk)))() if chunk else None
        ids = (i64s * len(eos))(*eos) if eos else None
        first = (i64s * A)() if eos else None
        n = self._fn(logits.data_ptr(), A, L, V, logits.stride(0), logits.stride(1), tokens.data_ptr(), tokens.stride(0),
                     mask_id, RULES[rule.kind], rule.param, k, left, lim, rng, chunk, counts, ids, len(eos), first)
        if n < 0:
            raise RuntimeError(f"step kernel refused its input (code {n}): block length {L}, rule {rule.kind!r}")
        flags = [True] * A if n == A else [bool(v) for v in left]
        if not (chunk or eos):
            return flags
        per = L // chunk if chunk else 0
        return flags, [list(counts[a * per : (a + 1) * per]) for a in range(A)] if chunk else None, list(first) if eos else None


def step_kernel() -> StepKernel | None:
    """The kernel if ``DPBENCH_STEP_KERNEL`` allows it and it builds, else None (see the module doc)."""
    mode = _mode()
    if mode == "off":
        return None
    kernel, error = _built()
    if kernel is None:
        if mode == "on":
            raise RuntimeError(f"DPBENCH_STEP_KERNEL=on but the C step kernel could not be built: {error}")
        _warn_once(error)
    return kernel


def kernel_status() -> str:
    """One line for reports: whether the kernel is in use here, and if not why."""
    if _mode() == "off":
        return "off (DPBENCH_STEP_KERNEL=off)"
    kernel, error = _built()
    return "on" if kernel is not None else f"unavailable ({error})"


def _built() -> tuple[StepKernel | None, str]:
    """The kernel for the current ``$CC`` and cache directory (built once per pair). Every
    `generate` asks, so the lookup is keyed by the raw environment strings (no path work)."""
    env = os.environ
    return _built_for(env.get("CC", "cc"), env.get("DPBENCH_CACHE_DIR"), env.get("XDG_CACHE_HOME"))


@lru_cache(maxsize=None)
def _built_for(cc: str, cache_env: str | None, xdg: str | None) -> tuple[StepKernel | None, str]:
    return _load(cc, _cache_dir(cache_env, xdg))


def _mode() -> str:
    return _parse_mode(os.environ.get("DPBENCH_STEP_KERNEL", "auto"))


@lru_cache(maxsize=None)
def _parse_mode(raw: str) -> str:
    mode = raw.strip().lower() or "auto"
    if mode not in MODES:
        raise ValueError(f"DPBENCH_STEP_KERNEL must be one of {', '.join(MODES)}, got {mode!r}")
    return mode


def _cache_dir(cache_env: str | None = None, xdg: str | None = None) -> Path:
    if cache_env:
        return Path(cache_env)
    return Path(xdg or Path.home() / ".cache") / "dpbench"


@lru_cache(maxsize=None)
def _load(cc: str, cache_dir: Path) -> tuple[StepKernel | None, str]:
    """Compile (once per source, flags and compiler) and load; (None, why) on failure."""
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + "\0".join((cc,) + FLAGS).encode()).hexdigest()[:16]
    lib = cache_dir / "kernels" / f"step-{key}.so"
    try:
        if not lib.exists():
            lib.parent.mkdir(parents=True, exist_ok=True)
            tmp = lib.with_name(f".{lib.name}.{os.getpid()}.tmp")  # concurrent builds (torchrun) each write their own
            done = subprocess.run([cc, *FLAGS, "-o", str(tmp), str(SOURCE), "-lm"], capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                return None, f"{cc} exited with {done.returncode}: {done.stderr.strip()[-300:]}"
            os.replace(tmp, lib)
        return StepKernel(ctypes.CDLL(str(lib))), ""
    except (OSError, subprocess.SubprocessError) as e:
        return None, f"{type(e).__name__}: {e}"


@lru_cache(maxsize=None)
def _warn_once(error: str) -> None:
    warnings.warn(
        f"dpbench: the C step kernel could not be built ({error}); using the tensor path, which is slower "
        f"at batch 1 on a CPU. Set CC to a C compiler, or DPBENCH_STEP_KERNEL=off to silence this.",
        RuntimeWarning, stacklevel=3,
    )
