"""A built wheel carries everything a run needs: gsm8k through lm-eval from a non-editable install.

Builds dpbench's wheel from a copy of the sources (pip, no network, no build isolation: it uses
this venv's setuptools), installs it into a scratch directory with ``--no-deps`` (the venv's
torch, transformers and lm-eval serve as the dependencies), then, from a directory outside the
checkout, imports dpbench from there and runs the shipped gsm8k fixture through lm-eval with the
shipped tiny model. Needs: pip and setuptools in the venv (the set-up installs both).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "gsm8k_tiny.jsonl"

SCRIPT = r"""
import json, sys
import dpbench
from dpbench.lmeval import DPBenchLM, TASKS_DIR, evaluate
site = sys.argv[1]
assert dpbench.__file__.startswith(site), dpbench.__file__
dl = DPBenchLM(model="tiny-arith", sampler="dparallel", gen_length=16, block_length=8, device="cpu", warmup=False)
run = evaluate(dl, "gsm8k", data_file=sys.argv[2], limit=2, workdir=sys.argv[3])
print(json.dumps({"file": dpbench.__file__, "tasks_dir": str(TASKS_DIR), "n": len(run.records),
                  "metric": run.results["results"]["dpbench_gsm8k"]["exact_match,none"]}))
"""


def test_wheel_install_runs_gsm8k_through_lmeval(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    shutil.copytree(ROOT / "dpbench", src / "dpbench", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(tmp_path / "dist"), str(src)],
                   check=True, capture_output=True, text=True)
    (wheel,) = (tmp_path / "dist").glob("dpbench-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", str(site), str(wheel)], check=True, capture_output=True)
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(site), str(FIXTURE), str(tmp_path / "tasks")],
                          cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["file"].startswith(str(site)) and out["tasks_dir"].startswith(str(site))
    assert out["n"] == 2 and 0.0 <= out["metric"] <= 1.0
