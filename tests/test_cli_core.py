from typer.testing import CliRunner

from dpbench.cli import app

runner = CliRunner()


def test_samplers_lists_params():
    res = runner.invoke(app, ["samplers"])
    assert res.exit_code == 0, res.output
    assert "dparallel" in res.output and "threshold=0.5" in res.output and "steps=256" in res.output
    assert "step_kernel=True" in res.output and "CPU step kernel (built-in samplers at temperature 0" in res.output


def test_generate_prints_answer_and_counts(tmp_path, char_tokenizer, tiny_lm):
    tiny_lm.module.save_pretrained(tmp_path)
    char_tokenizer.save_pretrained(tmp_path)
    res = runner.invoke(
        app, ["generate", "1+2=", "--model", str(tmp_path), "--sampler", "dparallel",
              "-p", "gen_length=16,block_length=8", "-p", "threshold=0.8"],
    )
    assert res.exit_code == 0, res.output
    assert "nfe=" in res.output and "tokens_per_forward=" in res.output and "seconds=" in res.output


def test_generate_bad_param_is_one_clear_line(tmp_path):
    res = runner.invoke(app, ["generate", "hi", "--model", str(tmp_path), "--sampler", "baseline", "-p", "stepz=3"])
    assert res.exit_code != 0
    assert "unknown parameter(s) stepz" in res.output


def test_every_command_has_help_with_an_example():
    for cmd in app.registered_commands:
        name = cmd.name or cmd.callback.__name__
        res = runner.invoke(app, [name, "--help"])
        assert res.exit_code == 0, name
        assert "Example" in res.output, f"{name} --help has no example"


def test_generate_takes_the_presets_task_defaults():
    """tiny-arith decodes with arith's gen 64 / block 16 unless told otherwise, not the paper's 256 / 32."""
    res = runner.invoke(app, ["generate", "What is 3 + 4 + 5?", "--model", "tiny-arith", "--sampler", "dparallel"])
    assert res.exit_code == 0, res.output
    assert "gen_length=64, block_length=16" in res.output and "#### 12" in res.output
    res = runner.invoke(app, ["generate", "What is 3 + 4 + 5?", "--model", "tiny-arith", "-p", "gen_length=32,block_length=8"])
    assert res.exit_code == 0, res.output
    assert "gen_length=32, block_length=8" in res.output
