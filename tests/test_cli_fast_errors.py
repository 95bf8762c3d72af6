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
