"""Golden decodes of the sampler loop: every sampler x cache mode x step path on real prompts.

Captured from the loop as it stood before the loop was restructured (issue 16, commit 9f94629)
and replayed by tests/test_loop_golden.py, which asserts that today's loop gives exactly the
same tokens, NFE, forward tokens and traces. Regenerate only when a change is *meant* to alter
decoding (say so in the commit):

    .venv/bin/python tests/golden_cases.py --write

Models: the shipped teacher ``tiny-arith`` (LLaDA-style, the task's gen 64 / block 16) and a
random native Dream (shifted logits, GQA) on the same tokenizer, so both cache code paths are
covered. Prompts: arith test problems, one alone and a left-padded batch of mixed lengths.
"""

from __future__ import annotations

import gzip
import itertools
import json
import sys
from functools import lru_cache
from pathlib import Path

import torch

FIXTURE = Path(__file__).with_name("fixtures") / "loop_golden.json.gz"

SAMPLERS = {
    "baseline": ("baseline", {"steps": 64}),
    "few-step": ("baseline", {"steps": 16}),
    "random-remask": ("baseline", {"steps": 32, "remasking": "random"}),
    "dparallel": ("dparallel", {"threshold": 0.5}),
    "confidence": ("confidence", {"threshold": 0.9}),
    "entropy_bound": ("entropy_bound", {"gamma": 0.3}),
}
CACHES = {"none": {}, "prefix": {"cache": "prefix"}, "dual": {"cache": "dual"},
          "dual+16": {"cache": "dual", "dual_lookahead": 16}}
BATCHES = {"alone": [3], "mixed": [0, 1, 2, 4]}  # test docs: 3 and 4 terms, so prompt lengths differ


def cases() -> list[dict]:
    out = []
    for model, smp, cache, kernel, early, batch in itertools.product(
        ("tiny-arith", "dream"), SAMPLERS, CACHES, (True, False), (False, True), BATCHES
    ):
        if model == "dream" and (early or batch == "alone"):
            continue  # the Dream model covers the shifted cache paths; one batch shape is enough
        out.append(dict(model=model, sampler=smp, cache=cache, step_kernel=kernel, early_stop=early, batch=batch,
                        temperature=0.0, trace=False))
    for model, smp, cache in itertools.product(("tiny-arith",), SAMPLERS, ("none", "dual")):
        # Traces and sampling at temperature > 0 run the tensor path only.
        out.append(dict(model=model, sampler=smp, cache=cache, step_kernel=False, early_stop=False, batch="mixed",
                        temperature=0.0, trace=True))
        out.append(dict(model=model, sampler=smp, cache=cache, step_kernel=True, early_stop=True, batch="mixed",
                        temperature=0.7, trace=False))
    return out


def key(case: dict) -> str:
    return "|".join(f"{k}={case[k]}" for k in sorted(case))


@lru_cache(maxsize=None)
def _model(name: str):
    from dpbench.models import DiffusionLM, DreamConfig, DreamModel, load_model

    lm, tok = load_model("tiny-arith", device="cpu", dtype="fp32")
    if name == "tiny-arith":
        return lm, tok
    torch.manual_seed(7)
    cfg = DreamConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, rope_theta=10000.0, mask_token_id=lm.mask_id)
    model = DreamModel(cfg).eval()
    with torch.no_grad():
        model.lm_head.weight.mul_(40.0)
    return DiffusionLM(model, mask_id=lm.mask_id, eos_token_ids=lm.eos_token_ids, shift_logits=True), tok


@lru_cache(maxsize=None)
def _batch(name: str):
    from dpbench.tasks import get_task

    lm, tok = _model("tiny-arith")
    task = get_task("arith")
    docs = task.docs("test", limit=8)
    prompts = [task.build_prompt(docs[i], tok) for i in BATCHES[name]]
    enc = tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=False)
    return enc.input_ids, enc.attention_mask


def run_case(case: dict) -> dict:
    from dpbench.samplers import get_sampler

    lm, _ = _model(case["model"])
    name, params = SAMPLERS[case["sampler"]]
    smp = get_sampler(name, gen_length=64, block_length=16, **params, **CACHES[case["cache"]],
                      step_kernel=case["step_kernel"], early_stop=case["early_stop"], temperature=case["temperature"])
    ids, am = _batch(case["batch"])
    gen = torch.Generator().manual_seed(11)
    out = smp.generate(lm, ids, am, trace=case["trace"], generator=gen)
    res = {"sequences": out.sequences.tolist(), "nfe": out.nfe.tolist(), "forward_tokens": out.forward_tokens.tolist()}
    if case["trace"]:
        res["trace"] = {"step": out.trace.step.tolist(),
                        "confidence": [[None if v != v else v for v in row] for row in out.trace.confidence.tolist()],
                        "entropy": [[None if v != v else v for v in row] for row in out.trace.entropy.tolist()]}
    return res


def load() -> dict:
    with gzip.open(FIXTURE, "rt", encoding="utf-8") as fh:
        return json.load(fh)


def main() -> None:
    if "--write" not in sys.argv:
        raise SystemExit(__doc__)
    torch.set_num_threads(1)
    golden = {key(c): run_case(c) for c in cases()}
    FIXTURE.parent.mkdir(exist_ok=True)
    with gzip.open(FIXTURE, "wt", encoding="utf-8", compresslevel=9) as fh:
        json.dump(golden, fh, separators=(",", ":"))
    print(f"wrote {len(golden)} cases to {FIXTURE} ({FIXTURE.stat().st_size // 1024} KiB)")


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
