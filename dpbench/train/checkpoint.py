"""Resumable `pretrain` checkpoints: everything needed to continue as if never stopped.

``OUT/checkpoints/step-N/`` holds the weights (safetensors), the optimizer state, the
Python and torch RNG states (batch order and masks) and ``state.json`` (step, wall-clock,
loss history, evaluations, the settings that decide the weights). A checkpoint is written
to a temporary directory and renamed, so a kill leaves either a complete checkpoint or
none. A resume refuses settings that would train different weights.
"""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path
from typing import Any

import torch

from .card import CARD
from .config import PretrainConfig

CHECKPOINTS, STATE = "checkpoints", "state.json"


def _all(out: Path) -> list[Path]:
    cks = [p for p in (out / CHECKPOINTS).glob("step-*") if (p / STATE).exists()]
    return sorted(cks, key=lambda p: int(p.name.split("-")[1]))


def latest_checkpoint(out: Path) -> Path | None:
    cks = _all(out)
    return cks[-1] if cks else None


def finished(out: Path, cfg: PretrainConfig) -> dict[str, Any] | None:
    """The card of a finished run in ``out`` with the same training settings, else None.

    A finished run with other settings is refused rather than overwritten."""
    path = out / CARD
    if not path.exists():
        return None
    card = json.loads(path.read_text())
    if not card.get("complete"):
        return None
    _check_same(PretrainConfig.from_dict(card["pretrain_config"]), cfg, f"{out} holds a finished model")
    return card


def _check_same(old: PretrainConfig, new: PretrainConfig, what: str) -> None:
    a, b = old.training_keys(), new.training_keys()
    diff = [f"{k}: {a[k]!r} -> {b[k]!r}" for k in a if a[k] != b.get(k)]
    if diff:
        raise ValueError(f"{what} trained with other settings ({'; '.join(diff)}); use a fresh --out "
                         f"(or the old settings to resume)")


def save_resume_checkpoint(out: Path, cfg: PretrainConfig, state: dict[str, Any], model, opt,
                           rng: random.Random, gen: torch.Generator) -> Path:
    from safetensors.torch import save_file

    root = out / CHECKPOINTS
    ck = root / f"step-{state['step']}"
    tmp = root / f".tmp-{ck.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}, str(tmp / "model.safetensors"))
    torch.save({"optimizer": opt.state_dict(), "python_rng": rng.getstate(), "torch_rng": gen.get_state()},
               tmp / "optimizer.pt")
    (tmp / STATE).write_text(json.dumps({**state, "config": cfg.training_keys()}, indent=1))
    shutil.rmtree(ck, ignore_errors=True)
    tmp.rename(ck)
    for old in _all(out)[: -cfg.keep_checkpoints]:
        shutil.rmtree(old, ignore_errors=True)
    return ck


def load_checkpoint(ck: Path, cfg: PretrainConfig, model, opt, rng: random.Random,
                    gen: torch.Generator) -> dict[str, Any]:
    """Restore ``ck`` into model, optimizer and RNGs; returns its state (step, seconds, losses, history)."""
    from safetensors.torch import load_file

    state = json.loads((ck / STATE).read_text())
    saved = state.pop("config")
    _check_same(PretrainConfig.from_dict({**cfg.__dict__, **saved}), cfg, f"the checkpoint {ck} was")
    model.load_state_dict(load_file(str(ck / "model.safetensors")))
    extra = torch.load(ck / "optimizer.pt", map_location="cpu", weights_only=False)
    opt.load_state_dict(extra["optimizer"])
    rng.setstate(extra["python_rng"])
    gen.set_state(extra["torch_rng"])
    return state


def remove_checkpoints(out: Path) -> None:
    shutil.rmtree(out / CHECKPOINTS, ignore_errors=True)
