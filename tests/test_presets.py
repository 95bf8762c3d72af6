"""Model presets: the d3LLM checkpoints resolve to the native families with their published decoder."""

import pytest

from dpbench.models.loading import PRESETS, resolve_source
from dpbench.samplers import build_sampler


@pytest.mark.parametrize("alias,family,threshold", [
    ("d3llm-llada", "llada", 0.5), ("d3llm-dream", "dream", 0.4), ("d3llm-coder", "dream", 0.5),
])
def test_d3llm_presets(alias, family, threshold):
    source, preset = resolve_source(alias)
    assert source.startswith("d3LLM/") and preset.family == family
    if family == "llada":
        assert preset.mask_id == 126336 and preset.eos_token_ids == (126081, 126348)
    name, params = preset.recommended
    smp = build_sampler(name, dict(params))
    assert smp.name == "multiblock" and smp.params()["threshold"] == threshold
    assert smp.params()["block_add_threshold"] == 0.1 and smp.params()["decoded_token_threshold"] == 0.95


def test_every_recommended_decoder_builds():
    for name, p in PRESETS.items():
        if p.recommended is not None:
            build_sampler(p.recommended[0], dict(p.recommended[1]))  # raises on a bad name or param
