"""Distillation ablation: distil with each recipe, then score every student on one split.

    OMP_NUM_THREADS=1 nice -n 5 .venv/bin/python scripts/distill_ablation.py \
        configs/distill/ablations/*.yaml --out runs/ablation --split validation

For each recipe (a `dpbench distill` YAML) the three stages run into ``OUT/NAME`` (resumable:
rerunning skips what is done). Recipes whose trajectory settings agree share one decoded
dataset (decoded once into ``OUT/_trajectories/KEY``, then copied). Each student, and the
teacher once, decode the split with ``dparallel`` at every ``--thresholds`` value (and the
teacher with ``baseline``); one JSON line per (model, threshold) goes to
``OUT/scores-SPLIT.jsonl`` and a table to ``OUT/ablation-SPLIT.md``. The summary column is
the largest NFE speedup over the teacher's baseline whose accuracy is within 1 point of
the teacher's baseline accuracy on the same split. ``--samplers dparallel,multiblock`` scores
several threshold samplers (each at the task's other defaults).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import time
from pathlib import Path

import torch


def traj_key(cfg) -> str:
    t = cfg.trajectories
    spec = {"teacher": cfg.teacher, "split": t.split, "limit": t.limit, "sampler": t.sampler, "params": t.params,
            "distinct": t.distinct, "seed": t.seed, "dataset": t.dataset}
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]


def score(model: str, split: str, runs: list[tuple[str, dict]], limit: int | None, batch_size: int) -> list[dict]:
    from dpbench.models import load_model
    from dpbench.tasks import get_task
    from dpbench.train import evaluate

    lm, tok = load_model(model, device="cpu")
    task = get_task("arith")
    rows = []
    for sampler, params in runs:
        t0 = time.perf_counter()
        m = evaluate(lm, tok, task, sampler, limit=limit, batch_size=batch_size, split=split, **params)
        rows.append({"model": model, "split": split, "sampler": sampler, **params, "n": m["n"],
                     "accuracy": m["accuracy"], "mean_nfe": m["mean_nfe"], "seconds": round(time.perf_counter() - t0, 1)})
        print(json.dumps(rows[-1]), flush=True)
    return rows


def summarise(rows: list[dict], teacher: str) -> str:
    ref = next(r for r in rows if r["name"] == "teacher" and r["sampler"] == "baseline")
    ts = sorted({r["threshold"] for r in rows if "threshold" in r})
    lines = [f"teacher `{teacher}` + baseline on {ref['split']} ({ref['n']} problems): {ref['accuracy']:.1%} "
             f"at {ref['mean_nfe']:.2f} NFE", ""]
    for sampler in dict.fromkeys(r["sampler"] for r in rows if r["sampler"] != "baseline"):
        lines += [f"### {sampler}", "", "| recipe | " + " | ".join(f"thr {t}" for t in ts)
                  + " | best speedup within 1 pt |", "|---|" + "---|" * (len(ts) + 1)]
        for name in dict.fromkeys(r["name"] for r in rows):
            cells, best = [], None
            for t in ts:
                r = next((r for r in rows if r["name"] == name and r["sampler"] == sampler
                          and r.get("threshold") == t), None)
                if r is None:
                    cells.append("")
                    continue
                speed = ref["mean_nfe"] / r["mean_nfe"]
                cells.append(f"{r['accuracy']:.1%} / {speed:.2f}x")
                if r["accuracy"] >= ref["accuracy"] - 0.01 - 1e-9:
                    best = max(best or 0.0, speed)
            if any(cells):
                lines.append(f"| {name} | " + " | ".join(cells) + f" | {'-' if best is None else f'{best:.2f}x'} |")
        lines.append("")
    return "\n".join(lines) + ("\n(cells: accuracy / NFE speedup over the teacher's baseline at each threshold, the "
                               "task's other defaults; best: the fastest cell within 1 point of the teacher's baseline)\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("configs", nargs="+", type=Path)
    ap.add_argument("--out", type=Path, default=Path("runs/ablation"))
    ap.add_argument("--split", default="validation")
    ap.add_argument("--thresholds", default="0.2,0.3,0.4,0.5,0.6,0.7")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--score-only", action="store_true", help="do not distil; score students already in --out")
    ap.add_argument("--samplers", default="dparallel", help="threshold samplers to score, comma-separated")
    ap.add_argument("--teacher", default=None, help="replace every recipe's teacher (e.g. a clean CPU teacher)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.split == "test":
        print("note: scoring on test; choices belong on validation")

    from dpbench.distill import DistillConfig, run_distill

    thresholds = [float(t) for t in args.thresholds.split(",")]
    samplers = args.samplers.split(",")
    args.out.mkdir(parents=True, exist_ok=True)
    scores = args.out / f"scores-{args.split}.jsonl"
    done = [json.loads(x) for x in scores.read_text().splitlines()] if scores.exists() else []
    seen = {(r["name"], r["sampler"], r.get("threshold")) for r in done}
    teacher = None
    for path in args.configs:
        cfg = DistillConfig.from_yaml(path)
        if args.teacher:
            cfg = DistillConfig.from_dict({**cfg.to_dict(), "teacher": args.teacher})
        name, out = path.stem, args.out / path.stem
        teacher = teacher or cfg.teacher
        if not args.score_only and not (out / "model" / "distill.json").exists():
            # Recipes with the same trajectory settings share one decoded dataset (resumable too).
            shared = args.out / "_shared" / traj_key(cfg)
            run_distill(cfg.teacher, cfg.task, shared, cfg, stages=("trajectories",))
            if not (out / "trajectories" / "stats.json").exists():
                shutil.copytree(shared / "trajectories", out / "trajectories", dirs_exist_ok=True)
            t0 = time.perf_counter()
            run_distill(cfg.teacher, cfg.task, out, cfg, stages=("train", "merge"), name=name)
            print(f"{name}: trained and merged in {time.perf_counter() - t0:.0f} s", flush=True)
        todo = [(smp, {"threshold": t}) for smp in samplers for t in thresholds if (name, smp, t) not in seen]
        for r in score(str(out / "model"), args.split, todo, args.limit, args.batch_size) if todo else []:
            done.append({"name": name, **r})
            with open(scores, "a") as f:
                f.write(json.dumps(done[-1]) + "\n")
    runs = [("baseline", {})] + [(smp, {"threshold": t}) for smp in samplers for t in thresholds]
    todo = [(s, p) for s, p in runs if ("teacher", s, p.get("threshold")) not in seen]
    for r in score(teacher, args.split, todo, args.limit, args.batch_size) if teacher and todo else []:
        done.append({"name": "teacher", **r})
        with open(scores, "a") as f:
            f.write(json.dumps(done[-1]) + "\n")
    for r in done:
        if r["name"] == "teacher":
            r["model"] = teacher
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"ablation-{args.split}.md").write_text(summarise(done, teacher))
    print((args.out / f"ablation-{args.split}.md").read_text())


if __name__ == "__main__":
    main()
