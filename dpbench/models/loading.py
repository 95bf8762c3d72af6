"""`load_model`: presets, local directories and any Hugging Face masked LM -> `DiffusionLM`."""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModelForMaskedLM, AutoTokenizer, PreTrainedTokenizerBase

from . import dream  # noqa: F401  (registers the native Dream config with AutoConfig before any from_pretrained)
from .adapter import DiffusionLM
from .llada import LLaDAModelLM, count_parameters
from .presets import _ALIASES, ASSETS, PRESETS, Preset, resolve_source  # noqa: F401  (re-exported)


DEVICE_TYPES = ("cpu", "cuda", "mps")


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """cuda > mps > cpu unless told otherwise; a device that is unknown (``ValueError``) or not here
    (`InputError`: e.g. ``cuda`` on a machine without CUDA) is refused now, not at the first tensor."""
    if device is not None:
        try:
            dev = torch.device(device)
        except (RuntimeError, TypeError):
            dev = None
        if dev is None or dev.type not in DEVICE_TYPES:
            raise ValueError(f"unknown device {str(device)!r}: expected cpu, cuda, cuda:N or mps")
        _require_available(dev)
        return dev
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def _require_available(dev: torch.device) -> None:
    from ..errors import InputError

    if dev.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch build has no CUDA" if torch.version.cuda is None else "no CUDA device is visible"
            raise InputError(f"--device {dev}: {why} on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {dev}: this machine has {torch.cuda.device_count()} CUDA device(s) (cuda:0..)")
    if dev.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise InputError(f"--device {dev}: MPS is not available on this machine; use --device cpu")


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 on a GPU, fp32 on the CPU, unless told otherwise."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type in ("cuda", "mps") else torch.float32
    names = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
             "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
    if dtype not in names:
        raise ValueError(f"dtype must be one of {sorted(names)} or 'auto', got {dtype!r}")
    return names[dtype]


class ModelNotFoundError(OSError):
    """The checkpoint could not be found locally or on the hub."""


def _hub_error(source: str, err: Exception) -> ModelNotFoundError:
    if os.path.isdir(source):
        return ModelNotFoundError(
            f"could not load {source!r}: the directory lacks a readable config.json or tokenizer files "
            f"({type(err).__name__}: {str(err).splitlines()[0]}). A model directory needs config.json, the safetensors "
            f"(with model.safetensors.index.json when sharded) and the tokenizer files"
        )
    return ModelNotFoundError(
        f"could not load {source!r}: not a local directory and the Hugging Face Hub is unreachable "
        f"or does not have it ({type(err).__name__}). Download it where the hub is reachable "
        f"(`hf download {source} --local-dir DIR`) and pass the directory: --model DIR"
    )


def load_model(
    name_or_path: str,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    *,
    trust_remote_code: bool = False,
    verbose: bool = False,
) -> tuple[DiffusionLM, PreTrainedTokenizerBase]:
    """Load a masked diffusion LM and its tokenizer, wrapped as a `DiffusionLM`.

    Presets (LLaDA, Dream, dParallel checkpoints, the built-in tiny models), local
    directories and hub ids are accepted. Checkpoints whose config says ``model_type:
    llada`` or ``Dream`` load into dpbench's native architectures (no remote code,
    weights streamed from the shards in ``dtype``); ``trust_remote_code=True`` uses the
    checkpoint's own modeling code instead. Other masked LMs (BERT, ModernBERT, ...)
    load through ``AutoModelForMaskedLM``. ``verbose`` prints parameter count, dtype
    and device.
    """
    source, preset = resolve_source(name_or_path)
    dev = resolve_device(device)
    dt = resolve_dtype(dtype, dev)
    if preset is not None and preset.family == "builtin" and not os.path.isdir(source):
        raise ModelNotFoundError(f"built-in model {name_or_path!r} is not shipped in this install (looked in {source})")
    try:
        config = AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)
        tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code)
    except OSError as err:
        raise _hub_error(source, err) from err
    except ValueError as err:
        if not os.path.isdir(source) or "tokenizer" not in str(err).lower():
            raise
        raise _hub_error(source, err) from err  # a local directory without tokenizer files

    model_type = str(getattr(config, "model_type", ""))
    t0 = time.perf_counter()
    try:
        module, shift, kind = _load_module(source, config, model_type, dt, dev, trust_remote_code)
    except Exception as err:  # noqa: BLE001  (only unreadable weights are translated; the rest re-raised)
        if not _is_weights_error(err):
            raise
        from ..errors import InputError

        msg = " ".join(str(err).split())[:300]
        raise InputError(f"could not read the weights of {source!r} ({type(err).__name__}: {msg}); the checkpoint "
                         f"is truncated or corrupt: download it again") from None
    module.eval()
    load_s = time.perf_counter() - t0
    return _wrap(name_or_path, source, preset, config, tokenizer, module, shift, kind, load_s, verbose)


def _is_weights_error(err: Exception) -> bool:
    """A safetensors (or torch checkpoint) read error, whatever transformers wrapped it in."""
    seen = err
    while seen is not None:
        if type(seen).__module__.startswith("safetensors") or "safetensor" in type(seen).__name__.lower():
            return True
        if isinstance(seen, OSError) and "unable to load weights" in str(seen).lower():
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _load_module(source: str, config, model_type: str, dt, dev, trust_remote_code: bool):
    if model_type.lower() in ("llada", "dream") and not trust_remote_code:
        from .dream import DreamModel  # native Dream (Qwen2 layout, bidirectional)

        cls = LLaDAModelLM if model_type.lower() == "llada" else DreamModel
        module = _load_native(cls, source, config, dt, dev)
        shift, kind = cls is DreamModel, f"native {cls.__name__}"
    elif trust_remote_code:
        from transformers import AutoModel

        module = AutoModel.from_pretrained(source, trust_remote_code=True, dtype=dt)
        module.to(dev)
        shift, kind = model_type.lower() == "dream", "remote code"
    else:
        module = AutoModelForMaskedLM.from_pretrained(source, dtype=dt)
        module.to(dev)
        shift, kind = False, "AutoModelForMaskedLM"
    return module, shift, kind


def _wrap(name_or_path, source, preset, config, tokenizer, module, shift, kind, load_s, verbose):
    mask_id = _first_not_none(
        preset.mask_id if preset else None,
        getattr(config, "mask_token_id", None),
        tokenizer.mask_token_id,
    )
    if mask_id is None:
        raise ValueError(f"{source!r} has no mask token: neither its config nor its tokenizer names one")
    eos = preset.eos_token_ids if preset and preset.eos_token_ids else _eos_ids(config, tokenizer)
    lm = DiffusionLM(module, mask_id=mask_id, eos_token_ids=eos, shift_logits=shift, name=name_or_path)
    if verbose:
        print(
            f"loaded {name_or_path} ({kind}): {count_parameters(module) / 1e6:.1f}M parameters, "
            f"{lm.dtype} on {lm.device}, mask_id={mask_id}, eos={list(eos)}, shift_logits={shift}, {load_s:.1f}s"
        )
    return lm, tokenizer


def _load_native(cls, source: str, config, dtype: torch.dtype, device: torch.device) -> torch.nn.Module:
    """Build on the meta device and stream the (sharded) safetensors straight into ``dtype`` on ``device``.

    transformers never materialises a random-initialised copy, so peak memory is about one
    copy of the weights in the target dtype (see scripts/measure_load_rss.py). A checkpoint
    whose tensor names do not match is refused instead of being silently random-filled.
    """
    config.validate_supported()  # refuse unsupported variants before reading any weights
    module, info = cls.from_pretrained(
        source, config=config, dtype=dtype, device_map={"": device}, output_loading_info=True
    )
    missing = sorted(info.get("missing_keys", ()))
    if missing:
        raise ValueError(
            f"{source!r} is not a {config.model_type} checkpoint dpbench can load: {len(missing)} tensors are "
            f"missing, e.g. {missing[:3]} (expected the published tensor names, see docs/models.md)"
        )
    return module


def _first_not_none(*values):
    return next((v for v in values if v is not None), None)


def _eos_ids(config, tokenizer: PreTrainedTokenizerBase) -> tuple[int, ...]:
    ids: list[int] = []
    for v in (tokenizer.eos_token_id, getattr(config, "eos_token_id", None), tokenizer.sep_token_id):
        for t in v if isinstance(v, (list, tuple)) else [v]:
            if t is not None and t not in ids:
                ids.append(int(t))
    if not ids:
        raise ValueError("the tokenizer and config name no EOS token; pass a model whose tokenizer has one")
    return tuple(ids)
