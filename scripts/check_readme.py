"""Run every command of README.md, as written, on a fresh clone, and record how long each took.

    bash scripts/check_readme.sh                 # clone this checkout to a temp dir, set it up, run everything
    bash scripts/check_readme.sh --here          # run in this checkout (its .venv), no clone
    bash scripts/check_readme.sh --skip-tests    # leave out the test suite (the longest command)
    bash scripts/check_readme.sh --clone DIR --only pytest   # rerun some commands in an earlier clone, merged

Commands are read from the README's ```bash and ```python blocks (backslash continuations
joined). Each runs as written, in README order, with the clone's .venv first on PATH, except:

- commands the README marks as long get the small limits listed in SHORTER (the README says
  so next to them); the record shows the command as run;
- commands that need the Hugging Face Hub and a GPU (LLaDA-8B, the dParallel checkpoints) are
  run as written with HF_HUB_OFFLINE=1 and must be refused within seconds, naming the problem,
  without downloading or decoding anything (dpbench's pre-flight checks);
- the set-up command is the clone's set-up step (timed like the others).

Writes results/readme/check.md (and check.json) with status and seconds per command; exits
non-zero if any command did not do what is expected of it.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# README command prefix -> extra arguments appended, and why (the README states the same).
SHORTER = {
    "dpbench distill": ("--limit 200 --max-steps 10", "the full recipe takes ~30 min on 2 cores"),
    "dpbench sweep": ("--limit 20", "4 thresholds x 2 models x 500 problems take ~25 min"),
    "dpbench pretrain": ("--steps 20 --batch-size 16 --eval-limit 20", "the full recipes take 25 min (CPU recipe) to hours on a CPU"),
}
HUB_MODELS = ("GSAI-ML/", "Zigeng/", "Dream-org/")
SETUP = "bash scripts/setup.sh"
TESTS = ".venv/bin/python -m pytest"


def commands(readme: Path) -> list[tuple[str, str]]:
    """(language, command) for every command of the README's bash and python blocks, in order."""
    out, lang, buf = [], None, []
    for line in readme.read_text().splitlines():
        fence = re.match(r"^```(\w*)\s*$", line)
        if fence:
            if lang is None:
                lang, buf = fence.group(1) or "text", []
            else:
                if lang == "python" and buf:
                    out.append(("python", "\n".join(buf)))
                lang = None
            continue
        if lang == "bash":
            if buf and buf[-1].endswith("\\"):
                buf[-1] = buf[-1][:-1].rstrip() + " " + line.strip()
            else:
                buf.append(line)
            if not line.rstrip().endswith("\\"):
                cmd = buf[-1].strip()
                if cmd and not cmd.startswith("#"):
                    out.append(("bash", cmd))
        elif lang == "python":
            buf.append(line)
    # Commands in the prose (lm-eval users' one-liners and the report that reads their output), in order.
    for m in re.finditer(r"`((?:python -m dpbench\.lmeval|dpbench report) [^`]+)`", readme.read_text()):
        out.append(("bash", m.group(1)))
    return out


def plan(cmd: str) -> tuple[str, str, str]:
    """(command to run, how it is run, expected outcome: ok | refused)."""
    bare = cmd.split("  #")[0].strip()
    if any(m in bare for m in HUB_MODELS) and not bare.startswith("dpbench report"):
        return bare, "as written, offline: needs the hub and a GPU", "refused"
    for prefix, (extra, why) in SHORTER.items():
        if bare.startswith(prefix):
            return f"{bare} {extra}", f"with {extra} ({why})", "ok"
    return bare, "as written", "ok"


def run_all(where: Path, out: Path, skip_tests: bool, log, only: str | None = None) -> list[dict]:
    env = {**os.environ, "PATH": f"{where / '.venv' / 'bin'}:{os.environ['PATH']}", "HF_HUB_OFFLINE": "1",
           "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=where, capture_output=True, text=True).stdout.strip()
    rows = []
    for lang, cmd in commands(where / "README.md"):
        if cmd.startswith(SETUP) or (only is not None and only not in cmd):
            continue  # the set-up step is timed by main()
        if cmd.startswith(TESTS) and skip_tests:
            rows.append({"command": cmd, "run": "skipped (--skip-tests)", "status": "skipped", "seconds": None})
            continue
        if lang == "python":
            run_cmd, how, expect = cmd, "as written (python)", "ok"
            argv = [str(where / ".venv" / "bin" / "python"), "-c", cmd]
        else:
            run_cmd, how, expect = plan(cmd)
            argv = ["bash", "-c", run_cmd]
        log(f"$ {run_cmd if lang == 'bash' else '(python block)'}")
        t0 = time.perf_counter()
        proc = subprocess.run(argv, cwd=where, env=env, capture_output=True, text=True)
        secs = time.perf_counter() - t0
        tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
        if expect == "ok":
            status = "ok" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
        else:
            named = re.search(r"offline|does not exist|not a local directory|not cached", proc.stdout + proc.stderr)
            status = "refused at once, as expected" if proc.returncode and named and secs < 120 else "UNEXPECTED"
        rows.append({"command": cmd, "run": how, "status": status, "seconds": round(secs, 1), "tail": tail,
                     "commit": commit})
        log(f"  {status} in {secs:.1f} s")
    return rows


def write(rows: list[dict], out: Path, setup_s: float | None, where: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / "check.json").write_text(json.dumps({"setup_seconds": setup_s, "rows": rows}, indent=2) + "\n")
    lines = ["# README commands, checked", "",
             f"`bash scripts/check_readme.sh` on {os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d')}, "
             f"in {'a fresh clone' if setup_s is not None else 'this checkout'} ({where}).", ""]
    if setup_s is not None:
        lines += [f"Set-up (`bash scripts/setup.sh`): {setup_s:.0f} s.", ""]
    lines += ["| command | run | status | seconds | commit |", "|---|---|---|---|---|"]
    for r in rows:
        cmd = r["command"] if len(r["command"]) < 160 else r["command"][:157] + "..."
        cmd = cmd.replace("|", "\\|").replace("\n", " ")
        lines.append(f"| `{cmd}` | {r['run']} | {r['status']} | {'' if r['seconds'] is None else r['seconds']} | "
                     f"{r.get('commit', '')} |")
    (out / "check.md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--here", action="store_true", help="run in this checkout instead of a fresh clone")
    ap.add_argument("--skip-tests", action="store_true", help="do not run the test suite")
    ap.add_argument("--out", default=str(ROOT / "results" / "readme"), help="where check.md and check.json go")
    ap.add_argument("--clone", help="an earlier clone to run in (no new clone, no set-up)")
    ap.add_argument("--only", help="run only the commands containing this text; their rows replace the earlier ones")
    args = ap.parse_args()
    log = lambda msg: print(msg, flush=True)  # noqa: E731
    setup_s = None
    if args.here or args.clone:
        where = ROOT if args.here else Path(args.clone)
    else:
        tmp = Path(tempfile.mkdtemp(prefix="dpbench-readme-"))
        # mkdtemp makes it 0700: the code sandbox's unprivileged uid could not reach the clone's interpreter.
        tmp.chmod(0o755)
        where = tmp / "dpbench"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(where)], check=True)
        log(f"cloned into {where}; $ {SETUP}")
        t0 = time.perf_counter()
        subprocess.run(["bash", "scripts/setup.sh"], cwd=where, check=True)
        setup_s = time.perf_counter() - t0
    rows = run_all(where, Path(args.out), args.skip_tests, log, args.only)
    if args.only is not None and (Path(args.out) / "check.json").is_file():
        old = json.loads((Path(args.out) / "check.json").read_text())
        key = lambda cmd: cmd.split("  #")[0].strip()  # noqa: E731 (a comment's timing may have changed)
        new = {key(r["command"]): r for r in rows}
        earlier = {key(r["command"]): r for r in old["rows"]}
        # The README's commands in order: this run's rows, else the earlier run's; rows of commands the
        # README no longer has are dropped, and a command the earlier run never saw is listed as not run.
        rows = [new.get(key(cmd)) or earlier.get(key(cmd)) or {"command": cmd, "run": "not run yet",
                                                               "status": "not run", "seconds": None}
                for _lang, cmd in commands(where / "README.md") if not cmd.startswith(SETUP)]
        setup_s = old.get("setup_seconds")
    write(rows, Path(args.out), setup_s, where)
    bad = [r for r in rows if r["status"].startswith(("FAILED", "UNEXPECTED"))]
    log(f"{len(rows) - len(bad)} of {len(rows)} commands as expected; report in {args.out}/check.md")
    if not (args.here or args.clone) and not bad:
        shutil.rmtree(where.parent, ignore_errors=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
