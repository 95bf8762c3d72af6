"""`dpbench pretrain`: the masked-diffusion objective, a micro training run, the saved checkpoint."""

from __future__ import annotations

import json
from types import SimpleNamespace

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


def test_cli_defaults_match_library():
    import inspect

    from dpbench.cli.train import pretrain as cli_pretrain

    defaults = PretrainConfig()
    checked = 0
    for name, param in inspect.signature(cli_pretrain).parameters.items():
        if hasattr(defaults, name) and param.default.default is not ...:
            assert param.default.default == getattr(defaults, name), name
            checked += 1
    assert checked >= 12
