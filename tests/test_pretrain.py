"""`dpbench pretrain`: the masked-diffusion objective, a micro training run, the saved checkpoint."""

from __future__ import annotations

import importlib
import json
from types import SimpleNamespace

import pytest
import torch

from dpbench.models import build_char_tokenizer, load_model
from dpbench.tasks.arith import ArithTask
from dpbench.train import PretrainConfig, encode_docs, make_batch, masked_diffusion_loss, pretrain
from dpbench.train.pretrain import build_model


class Spy(torch.nn.Module):
    """Records the noisy input; predicts uniform logits."""

    def __init__(self, vocab: int) -> None:
        super().__init__()
        self.vocab, self.seen = vocab, None

    def forward(self, input_ids, attention_mask=None):
        self.seen = input_ids.clone()
        return SimpleNamespace(logits=torch.zeros(*input_ids.shape, self.vocab, requires_grad=True))


def _data(n: int = 32):
    task = ArithTask(train_size=n)
    tok = build_char_tokenizer()
    return task, tok, encode_docs(task, task.docs("train"), tok, gen_length=64)


def test_batch_layout_and_masking():
    task, tok, data = _data()
    idx = list(range(16))
    ids, attn, p = make_batch(data, idx, tok.pad_token_id)
    assert ids.shape == (16, p + 64)
    # Left padding: every row's prompt ends right before the answer, which ends in EOS padding.
    assert bool(attn[:, p:].all()) and bool((ids[:, -1] == tok.eos_token_id).all())
    assert tok.decode(ids[0, p:][ids[0, p:] != tok.eos_token_id]) == task.docs("train")[0].target

    spy = Spy(len(tok))
    g = torch.Generator().manual_seed(0)
    loss = masked_diffusion_loss(spy, ids, attn, p, mask_id=tok.mask_token_id, generator=g)
    masked = spy.seen == tok.mask_token_id
    assert not masked[:, :p].any()  # the prompt is never masked
    assert masked[:, p:].any()
    # EOS padding is masked (and so trained) like any answer token.
    assert (masked[:, p:] & (ids[:, p:] == tok.eos_token_id)).any()
    # Uniform logits: CE = log V per masked token, weighted by 1/t; positive and finite.
    assert torch.isfinite(loss) and loss > 0


def test_micro_pretrain_lowers_loss_and_saves(tmp_path):
    task, tok, data = _data(256)
    cfg = PretrainConfig(steps=40, batch_size=16, lr=3e-3, warmup_steps=5, d_model=32, n_layers=2, n_heads=2,
                         mlp_hidden_size=64, eval_limit=8, eval_batch_size=8, threads=1)
    ids, attn, p = make_batch(data, list(range(64)), tok.pad_token_id)

    def fixed_loss(model) -> float:
        with torch.no_grad():
            g = torch.Generator().manual_seed(123)
            return float(masked_diffusion_loss(model.eval(), ids, attn, p, mask_id=tok.mask_token_id, generator=g))

    torch.manual_seed(cfg.seed)
    before = fixed_loss(build_model(cfg, tok, 256))  # the same initialisation pretrain starts from
    result = pretrain(cfg, tmp_path / "ckpt", progress=False, log=lambda _: None, task=task)
    after = fixed_loss(result.model)
    assert after < 0.7 * before, (before, after)

    out = tmp_path / "ckpt"
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    card = json.loads((out / "model_card.json").read_text())
    assert card["steps_done"] == 40 and card["task_config"]["seed"] == task.config.seed
    assert card["metrics"]["baseline"]["n"] == 8 and "train_seconds" in card
    assert "accuracy" in (out / "README.md").read_text()

    # The checkpoint loads back through the public loader and decodes.
    lm, tok2 = load_model(str(out))
    assert lm.mask_id == tok.mask_token_id and tok.eos_token_id in lm.eos_token_ids
    assert torch.equal(lm.logits(ids[:2]), result.model(ids[:2]).logits)


def test_cli_flags_are_config_keys():
    """Every flag of `dpbench pretrain` sets a PretrainConfig key (None = leave the recipe's value)."""
    import inspect

    from dpbench.cli.train import pretrain as cli_pretrain
    from dpbench.train.config import config_fields

    keys = set(config_fields())
    names = [n for n in inspect.signature(cli_pretrain).parameters if n not in ("out", "config", "task_option",
                                                                                   "eval_sampler", "estimate")]
    assert len(names) >= 15 and all(n in keys for n in names), sorted(set(names) - keys)
    assert {"task_options", "eval_samplers"} <= keys


def _tiny_cfg(**kw) -> PretrainConfig:
    base = dict(steps=12, batch_size=8, lr=3e-3, warmup_steps=2, d_model=32, n_layers=1, n_heads=2,
                mlp_hidden_size=32, eval_limit=0, threads=1, save_every=4)
    return PretrainConfig(**{**base, **kw})


def test_pretrain_resumes_after_a_kill(tmp_path, monkeypatch):
    """A run that dies after 9 steps resumes from its step-8 checkpoint: only steps 9-12 are computed
    again, and the result is the uninterrupted run's, bit for bit."""
    pt = importlib.import_module("dpbench.train.pretrain")  # the package re-exports a function of that name
    from safetensors.torch import load_file

    task = ArithTask(train_size=64)
    quiet = dict(progress=False, log=lambda _: None, task=task)
    ref = pretrain(_tiny_cfg(), tmp_path / "ref", **quiet)
    assert not (tmp_path / "ref" / "checkpoints").exists()  # the finished model replaces them

    real, calls = pt.masked_diffusion_loss, []

    def dying(*a, **kw):
        calls.append(1)
        if len(calls) == 10:
            raise KeyboardInterrupt("killed")
        return real(*a, **kw)

    monkeypatch.setattr(pt, "masked_diffusion_loss", dying)
    with pytest.raises(KeyboardInterrupt):
        pretrain(_tiny_cfg(), tmp_path / "run", **quiet)
    cks = sorted(p.name for p in (tmp_path / "run" / "checkpoints").iterdir())
    assert cks == ["step-4", "step-8"] and not (tmp_path / "run" / "model_card.json").exists()

    calls.clear()
    again = pretrain(_tiny_cfg(eval_limit=4, eval_batch_size=4), tmp_path / "run", **quiet)  # eval keys may change
    assert again.resumed_from == 8 and len(calls) == 4
    assert again.losses == ref.losses
    a, b = load_file(str(tmp_path / "ref" / "model.safetensors")), load_file(str(tmp_path / "run" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    card = json.loads((tmp_path / "run" / "model_card.json").read_text())
    assert card["complete"] and card["steps_done"] == 12 and card["metrics"]["baseline"]["n"] == 4

    # A finished directory is not trained again; other training settings are refused, not mixed in.
    calls.clear()
    assert pretrain(_tiny_cfg(), tmp_path / "run", **quiet).skipped and not calls
    with pytest.raises(ValueError, match=r"lr: 0.003 -> 0.001"):
        pretrain(_tiny_cfg(lr=1e-3), tmp_path / "run", **quiet)


def test_resume_refuses_other_settings(tmp_path, monkeypatch):
    pt = importlib.import_module("dpbench.train.pretrain")  # the package re-exports a function of that name

    task = ArithTask(train_size=64)
    real = pt.masked_diffusion_loss
    n = []

    def dying(*a, **kw):
        n.append(1)
        if len(n) == 6:
            raise RuntimeError("boom")
        return real(*a, **kw)

    monkeypatch.setattr(pt, "masked_diffusion_loss", dying)
    with pytest.raises(RuntimeError):
        pretrain(_tiny_cfg(), tmp_path / "run", progress=False, log=lambda _: None, task=task)
    with pytest.raises(ValueError, match=r"step-4 was trained with other settings \(batch_size: 8 -> 4\)"):
        pretrain(_tiny_cfg(batch_size=4), tmp_path / "run", progress=False, log=lambda _: None, task=task)


def test_pretrain_config_validation(tmp_path):
    from dpbench.train.config import PretrainConfig as C

    with pytest.raises(ValueError, match="unknown config key.*stepz.*valid: task"):
        C.from_dict({"stepz": 10})
    with pytest.raises(ValueError, match="config key steps expects int, got 2.5"):
        C.from_dict({"steps": 2.5})
    with pytest.raises(ValueError, match="config key lr expects float, got True"):
        C.from_dict({"lr": True})
    with pytest.raises(ValueError, match="batch_size must be >= 1, got 0"):
        C.from_dict({"batch_size": 0})
    with pytest.raises(ValueError, match="task_options expects dict"):
        C.from_dict({"task_options": [1]})
    yml = tmp_path / "r.yaml"
    yml.write_text("steps: 100\nlr: 3e-3\neval_samplers: [baseline, dparallel]\ntask_options: {validation_fraction: 0}\n")
    cfg = C.from_yaml(yml)
    assert cfg.lr == 3e-3 and cfg.eval_samplers == ("baseline", "dparallel") and cfg.steps == 100
    assert cfg.override(steps=7, lr=None).steps == 7 and cfg.override(steps=7).lr == 3e-3


@pytest.mark.parametrize("name", ["tiny-arith-cpu.yaml", "tiny-arith-gpu.yaml"])
def test_shipped_recipes_load(name):
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "configs" / "pretrain" / name
    cfg = PretrainConfig.from_yaml(path)
    assert cfg.task == "arith" and cfg.steps > 0
