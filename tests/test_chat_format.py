"""Chat formatting for LLaDA- and Dream-style tokenizers (local fixtures, no hub).

The chat template is used when the tokenizer has one: decided by the
tokenizer, never by the model path.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from transformers import AutoTokenizer

from dpbench.lmeval import DPBenchLM
from dpbench.tasks import get_task
from dpbench.tasks.base import Doc
from dpbench.tasks.gsm8k import prompt_text

TOKENIZERS = Path(__file__).parent / "fixtures" / "tokenizers"
QUESTION = "Tom has 3 boxes with 2 apples each. How many apples?"
USER = prompt_text(QUESTION)
EXPECTED = {
    "llada_like": ("<|startoftext|><|start_header_id|>user<|end_header_id|>\n\n" + USER
                   + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"),
    "dream_like": ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n" + USER
                   + "<|im_end|>\n<|im_start|>assistant\n"),
}


def _load(family: str):
    return AutoTokenizer.from_pretrained(TOKENIZERS / family)


def _without_template(family: str, dest: Path) -> Path:
    """A copy of the tokenizer with its chat template removed."""
    shutil.copytree(TOKENIZERS / family, dest)
    (dest / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((dest / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (dest / "tokenizer_config.json").write_text(json.dumps(cfg))
    return dest


@pytest.mark.parametrize("family", ["llada_like", "dream_like"])
def test_task_and_lmeval_prompts_use_the_family_template(family, tiny_lm):
    tok = _load(family)
    doc = Doc(doc_id="0", question=QUESTION, target="#### 6")
    assert get_task("gsm8k").build_prompt(doc, tok) == EXPECTED[family]
    dl = DPBenchLM(lm=tiny_lm, tokenizer=tok, sampler="dparallel")
    assert dl.use_chat and dl.prompt(USER) == EXPECTED[family]
    ids = dl._encode([dl.prompt(USER)])["input_ids"][0].tolist()
    tokens = tok.convert_ids_to_tokens(ids)
    first = "<|startoftext|>" if family == "llada_like" else "<|im_start|>"
    assert tokens[0] == first and tokens[1] != first  # special tokens are single tokens, BOS not doubled
    markers = ({"<|start_header_id|>": 2, "<|end_header_id|>": 2, "<|eot_id|>": 1} if family == "llada_like"
               else {"<|im_start|>": 3, "<|im_end|>": 2})
    assert {m: tokens.count(m) for m in markers} == markers
    assert tok.decode(ids) == EXPECTED[family]


@pytest.mark.parametrize("family", ["llada_like", "dream_like"])
def test_decided_by_tokenizer_not_model_path(family, tiny_lm, tmp_path):
    # An "Instruct"-named directory whose tokenizer has no template: plain prompt.
    plain = AutoTokenizer.from_pretrained(_without_template(family, tmp_path / "GSAI-ML--LLaDA-8B-Instruct"))
    doc = Doc(doc_id="0", question=QUESTION, target="#### 6")
    assert get_task("gsm8k").build_prompt(doc, plain) == USER
    dl = DPBenchLM(lm=tiny_lm, tokenizer=plain, sampler="dparallel")
    assert not dl.use_chat and dl.prompt(USER) == USER
    with pytest.raises(ValueError, match="no chat template"):
        DPBenchLM(lm=tiny_lm, tokenizer=plain, sampler="dparallel", chat="true")
    # A "base"-named directory whose tokenizer has one: chat prompt; chat=false turns it off.
    templated = AutoTokenizer.from_pretrained(shutil.copytree(TOKENIZERS / family, tmp_path / "base-model"))
    assert get_task("gsm8k").build_prompt(doc, templated) == EXPECTED[family]
    assert DPBenchLM(lm=tiny_lm, tokenizer=templated, sampler="dparallel", chat="false").prompt(USER) == USER


def test_humaneval_prompt_instruct_wrapping_follows_the_tokenizer(tmp_path):
    task = get_task("humaneval")
    doc = task.docs()[0]
    chat = task.build_prompt(doc, _load("llada_like"))
    assert "Write a solution to the following problem and make sure that it passes the tests:\n```python\n" in chat
    assert chat.startswith("<|startoftext|><|start_header_id|>user")
    plain = AutoTokenizer.from_pretrained(_without_template("dream_like", tmp_path / "dream-plain"))
    assert task.build_prompt(doc, plain) == doc.question  # a base model continues the function
