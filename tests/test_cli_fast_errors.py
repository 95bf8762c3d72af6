"""An argument error answers before the heavy imports: no command that is refused loads transformers or peft."""

from __future__ import annotations

import subprocess
import sys

import pytest

# Each is refused by its checks (an unknown task or sampler) before any model is touched.
REFUSED = [
    ["run", "arith", "-s", "dparalel"],
    ["bench", "-m", "tiny-arith", "-s", "dparalel"],
    ["sweep", "arith", "-m", "t=tiny-arith", "--sampler", "dparalel"],
    ["distill", "--teacher", "tiny-arith", "--task", "arth", "--out", "{tmp}/d"],
    ["pretrain", "--task", "arth", "--out", "{tmp}/p"],
]

PROBE = """
import sys
from dpbench.cli import app
try:
    app(sys.argv[1:], standalone_mode=False)
except BaseException as err:
    print(type(err).__name__, file=sys.stderr)
heavy = sorted(m for m in ("transformers", "peft", "accelerate") if m in sys.modules)
print("HEAVY=" + ",".join(heavy))
"""


@pytest.mark.parametrize("argv", REFUSED, ids=lambda a: a[0])
def test_refused_command_skips_heavy_imports(argv, tmp_path):
    argv = [a.format(tmp=tmp_path) for a in argv]
    out = subprocess.run([sys.executable, "-c", PROBE, *argv], capture_output=True, text=True, timeout=120)
    assert "HEAVY=" in out.stdout, out.stderr
    assert out.stdout.strip().splitlines()[-1] == "HEAVY=", (argv, out.stdout, out.stderr[-2000:])
    assert "BadParameter" in out.stderr or "UsageError" in out.stderr or "Exit" in out.stderr, out.stderr[-2000:]
    assert not (tmp_path / "d").exists() and not (tmp_path / "p").exists()


def test_lazy_export_wins_over_its_submodule():
    """`from dpbench.train import pretrain` is the function even after its submodule was imported
    first (as it was with the eager package inits); the same for distill's train and merge."""
    code = """
import types
import dpbench.train.pretrain, dpbench.distill.train, dpbench.distill.merge
from dpbench.train import pretrain
from dpbench.distill import merge, train
assert all(callable(f) and not isinstance(f, types.ModuleType) for f in (pretrain, train, merge)), (pretrain, train, merge)
import dpbench.distill as d
assert "run_distill" in dir(d) and d.run_distill.__module__ == "dpbench.distill.pipeline"
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
