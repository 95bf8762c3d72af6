"""A character-level tokenizer for dpbench's built-in tasks and tiny models.

Built with the `tokenizers` library and wrapped as a transformers fast
tokenizer, so it saves to ``tokenizer.json`` and loads back with
``AutoTokenizer.from_pretrained`` without any custom code.
"""

from __future__ import annotations

import string

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS, MASK, BOS = "<|pad|>", "<|eos|>", "<|mask|>", "<|bos|>"
ROLES = ("<|system|>", "<|user|>", "<|assistant|>")
SPECIAL_TOKENS = (PAD, EOS, MASK, BOS, *ROLES)
# Every printable ASCII character plus newline: enough for arithmetic and small Python programs.
CHARS = "\n" + "".join(c for c in string.printable if c.isprintable())

# Role markers are single tokens; a turn ends with a newline. The template is
# decided by the tokenizer (as for LLaDA and Dream), never by the model path.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)


def build_char_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
    for ch in CHARS:
        vocab.setdefault(ch, len(vocab))
    core = Tokenizer(models.WordLevel(vocab=vocab, unk_token=PAD))
    # Each character is its own "word"; Fuse joins them back without spaces.
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core,
        pad_token=PAD,
        eos_token=EOS,
        mask_token=MASK,
        bos_token=BOS,
        unk_token=PAD,
        padding_side="left",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHAT_TEMPLATE
    return tok
