"""Bad input gets one clear error (exit code and message), never a traceback or a silent zero, and
nothing is written: broken weights, unknown or absent devices, empty data and completions, prompts
longer than the model. Usage errors keep Typer's format (exit 2); runtime errors are one line (exit 1)."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from dpbench.cli import app
from dpbench.models import load_model
from dpbench.models.loading import PRESETS

TINY = Path(PRESETS["tiny-arith"].source)


def _runtime_error(res, *needles: str) -> None:
    """Exit 1, one line 'error: ...' naming the problem, no usage text, no traceback."""
    assert res.exit_code == 1, res.output
    lines = res.output.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and "Usage:" not in res.output and "Traceback" not in res.output, res.output
    for needle in needles:
        assert needle in errors[0], (needle, res.output)


def _run(*args: str):
    return CliRunner().invoke(app, ["run", "arith", "--sampler", "dparallel", "--limit", "2", *args])


@pytest.fixture(scope="module")
def broken_models(tmp_path_factory) -> dict[str, Path]:
    raw = (TINY / "model.safetensors").read_bytes()
    header = struct.unpack("<Q", raw[:8])[0]
    out = {}
    for name, data in {"truncated": raw[: 8 + header + 1000], "garbage": b"not a safetensors file\n" * 10,
                       "cut-header": raw[:100]}.items():
        d = tmp_path_factory.mktemp(name)
        for f in TINY.iterdir():
            if f.is_file() and f.name != "model.safetensors":
                shutil.copy(f, d / f.name)
        (d / "model.safetensors").write_bytes(data)
        out[name] = d
    return out


def test_broken_weights_are_one_error(broken_models, tmp_path):
    for name, d in broken_models.items():
        res = _run("--model", str(d), "--out", str(tmp_path / name))
        _runtime_error(res, "could not read the weights", "truncated or corrupt")
        assert not (tmp_path / name / "manifest.json").exists() and not (tmp_path / name / "samples.jsonl").exists()
    with pytest.raises(ValueError, match="could not read the weights"):
        load_model(str(broken_models["garbage"]))


def test_devices_unknown_or_absent(tmp_path):
    res = _run("--model", "tiny-arith", "--device", "tpu9", "--out", str(tmp_path / "a"))
    assert res.exit_code == 2 and "unknown device 'tpu9'" in res.output and "Usage:" in res.output  # a usage error
    absent = "cuda" if not torch.cuda.is_available() else f"cuda:{torch.cuda.device_count()}"
    res = _run("--model", "tiny-arith", "--device", absent, "--out", str(tmp_path / "b"))
    _runtime_error(res, f"--device {absent}")
    res = CliRunner().invoke(app, ["generate", "1 + 1?", "--device", absent])
    _runtime_error(res, f"--device {absent}")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_empty_data_file_is_refused_before_anything_is_written(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    for task, engine in (("mbpp", "auto"), ("gsm8k", "dpbench"), ("gsm8k", "lmeval")):
        out = tmp_path / f"{task}-{engine}"
        res = CliRunner().invoke(app, ["run", task, "--sampler", "dparallel", "--model", "tiny-arith", "--data-file",
                                       str(empty), "--engine", engine, "--out", str(out)])
        _runtime_error(res, "has no documents", str(empty))
        assert not out.exists() or not any(p.name != ".dpbench.lock" for p in out.iterdir()), list(out.iterdir())


def test_empty_completions_file_is_an_error_not_nan(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    out = tmp_path / "scored"
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(empty), "--out", str(out)])
    _runtime_error(res, "holds no completions")
    assert not out.exists()
    missing = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(tmp_path / "nope.jsonl")])
    _runtime_error(missing, "not found")
    repeat = tmp_path / "repeat.jsonl"
    repeat.write_text(json.dumps({"task_id": "HumanEval/0", "completion": "x"}) + "\n"
                      + json.dumps({"task_id": "HumanEval/0", "completion": "y"}) + "\n")
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", str(repeat), "--out", str(out)])
    _runtime_error(res, "row 2 scores document 'HumanEval/0' again (row 1)")


def test_prompt_plus_answer_beyond_the_models_positions_is_refused_before_decoding(tmp_path):
    out = tmp_path / "long"
    res = _run("--model", "tiny-arith", "-p", "gen_length=256,block_length=32", "--out", str(out))
    _runtime_error(res, "gen_length (256)", "maximum of 256")
    assert not (out / "manifest.json").exists() and not (out / "samples.jsonl").exists()
    res = CliRunner().invoke(app, ["generate", "What is 3 + 4?", "-p", "gen_length=256,block_length=32"])
    _runtime_error(res, "maximum of 256")
    lm, _ = load_model("tiny-arith")
    assert lm.max_positions == 256
    lm.check_length(200, 56)
    with pytest.raises(ValueError, match=r"200 tokens\) \+ gen_length \(57\) = 257 positions"):
        lm.check_length(200, 57)


def test_usage_errors_keep_typers_format():
    res = _run("--model", "tiny-arith", "--sampler", "no-such-sampler")
    assert res.exit_code == 2 and "Usage:" in res.output and "no-such-sampler" in res.output
    res = CliRunner().invoke(app, ["score", "humaneval", "--completions", "x.jsonl", "--workers", "0"])
    assert res.exit_code == 2 and "workers must be >= 1, got 0" in res.output
