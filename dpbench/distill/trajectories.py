"""Stage 1: the teacher's own correct answers on the task's training prompts.

The teacher decodes each training prompt, by default with the ``baseline`` sampler
at the task's default parameters (the paper: gen 256, block 32, steps 256); any
registered sampler and parameters can be configured (``early_stop``, a KV cache or
a threshold sampler decode several times faster; docs/distill.md has the measured
speeds and what each choice does to the student). Answers the task scores as
correct are kept, the rest are logged and dropped. The dataset is JSONL in the
paper's format (``question``, ``llm_response``) plus the exact ``prompt`` the
teacher saw and a ``provenance`` record. The stage is resumable and kill-safe:
rows are synced to disk per batch, documents already in either file are skipped,
and a half-written last row is cut off and redone.

An existing dataset in the paper's format (JSONL/JSON/Parquet file, or a
directory written by ``datasets.save_to_disk``) can be imported instead.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..models.adapter import DiffusionLM
from ..tasks.base import Task
from ..textutil import decode_answers

KEPT, REJECTED, STATS, SETTINGS = "trajectories.jsonl", "rejected.jsonl", "stats.json", "settings.json"


@dataclass
class TrajectoryStats:
    kept: int
    rejected: int
    seconds: float
    path: str
    source: str  # "teacher" or the imported dataset's path

    @property
    def total(self) -> int:
        return self.kept + self.rejected

    def summary(self) -> str:
        rate = self.kept / self.total if self.total else 0.0
        return f"kept {self.kept} / {self.total} ({rate:.1%}), rejected {self.rejected}, {self.seconds:.0f}s -> {self.path}"


def encode_prompt(tokenizer, prompt: str) -> list[int]:
    """Prompt ids as the runner makes them: a chat template already wrote its special tokens."""
    return tokenizer(prompt, add_special_tokens=not getattr(tokenizer, "chat_template", None)).input_ids


def encode_left_padded(tokenizer, prompts: list[str], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Prompts -> left-padded ids and attention mask (B, P); the answer then starts at P for every row."""
    ids = [encode_prompt(tokenizer, p) for p in prompts]
    P = max(len(x) for x in ids)
    out = torch.full((len(ids), P), pad_id, dtype=torch.long)
    attn = torch.zeros((len(ids), P), dtype=torch.long)
    for i, x in enumerate(ids):
        if x:
            out[i, P - len(x):] = torch.tensor(x)
            attn[i, P - len(x):] = 1
    return out, attn


def decode(lm: DiffusionLM, tokenizer, prompts: list[str], sampler, generator=None) -> tuple[list[str], list[int]]:
    """Completions (text before the first EOS) and per-sample NFE for a batch of prompts."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else lm.eos_id
    ids, attn = encode_left_padded(tokenizer, prompts, pad)
    out = sampler.generate(lm, ids, attn, generator=generator)
    texts, _ = decode_answers(tokenizer, out.answers, lm.eos_token_ids)
    return texts, out.nfe.tolist()


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        if line.strip():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut by an interrupted run: everything after it is redone
    return rows


def _repair(path: Path) -> None:
    """Cut ``path`` back to its last complete line (a kill can leave half a row behind).

    Without this, rows appended after a cut line would be unreadable on the next read and be
    decoded again on every rerun."""
    if not path.exists():
        return
    data = path.read_bytes()
    good = 0
    for line in data.splitlines(keepends=True):
        if not line.endswith(b"\n"):
            break
        if line.strip():
            try:
                json.loads(line)
            except json.JSONDecodeError:
                break
        good += len(line)
    if good < len(data):
        with open(path, "r+b") as f:
            f.truncate(good)


def _check_settings(out: Path, settings: dict[str, Any]) -> None:
    """A dataset holds one decoder's answers: a rerun with another teacher, sampler or params is refused."""
    path = out / SETTINGS
    if path.exists():
        old = json.loads(path.read_text())
        diff = [f"{k}: {old.get(k)!r} -> {settings[k]!r}" for k in settings if old.get(k) != settings[k]]
        if diff:
            raise ValueError(f"{out} holds trajectories decoded with other settings ({'; '.join(diff)}); "
                             f"use a fresh --out or the old settings")
    else:
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(settings, indent=2))


def trajectory_docs(task: Task, split: str, limit: int | None, distinct: bool) -> list:
    """The documents the teacher decodes: the first ``limit`` of ``split``, each distinct prompt once
    if ``distinct``."""
    docs = task.docs(split=split, limit=limit)
    if not docs:
        raise ValueError(f"task {task.name!r} has no documents in split {split!r}")
    if distinct:
        seen: set[str] = set()
        docs = [d for d in docs if not (d.question in seen or seen.add(d.question))]
    return docs


def generate_trajectories(
    lm: DiffusionLM,
    tokenizer,
    task,
    out_dir: str | Path,
    *,
    split: str = "train",
    limit: int | None = None,
    batch_size: int = 16,
    params: dict[str, Any] | None = None,
    sampler: str = "baseline",
    distinct: bool = False,
    seed: int = 0,
    teacher: str = "",
    progress: bool = True,
) -> TrajectoryStats:
    """Decode the task's ``split`` prompts with ``sampler`` (task defaults + ``params``); keep the correct answers.

    ``distinct``: decode each distinct prompt once (a greedy teacher answers a repeated prompt
    identically, so repeats only cost time and weight the data). Resumable and kill-safe: rows are
    appended and synced per batch, a cut last line is repaired, finished documents are skipped.
    """
    out = Path(out_dir)
    from ..samplers import build_sampler  # task defaults the sampler takes, then ours (one resolution path)

    smp = build_sampler(sampler, dict(params or {}), task=task)
    docs = trajectory_docs(task, split, limit, distinct)
    provenance = {"teacher": teacher or lm.name, "task": task.name, "split": split,
                  "sampler": smp.name, "params": smp.params()}
    _check_settings(out, {**provenance, "distinct": distinct, "seed": seed})
    for name in (KEPT, REJECTED):
        _repair(out / name)
    kept_rows, rejected_rows = _read_jsonl(out / KEPT), _read_jsonl(out / REJECTED)
    done = {r["doc_id"] for r in kept_rows + rejected_rows}
    todo = [d for d in docs if d.doc_id not in done]
    ids = {d.doc_id for d in docs}
    kept = sum(1 for r in kept_rows if r["doc_id"] in ids)
    previous = _previous_seconds(out)
    t0 = time.perf_counter()
    bar = tqdm(total=len(docs), initial=len(docs) - len(todo), desc="trajectories", unit="traj",
               disable=not progress, dynamic_ncols=True)
    with open(out / KEPT, "a") as kept_f, open(out / REJECTED, "a") as rej_f:
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            prompts = [task.build_prompt(d, tokenizer) for d in batch]
            gen = torch.Generator().manual_seed(seed * 1_000_003 + i) if smp.config.temperature > 0 else None
            texts, nfe = decode(lm, tokenizer, prompts, smp, generator=gen)
            for doc, prompt, text, n in zip(batch, prompts, texts, nfe):
                score = task.score(doc, text)
                row = {"doc_id": doc.doc_id, "question": doc.question, "llm_response": text, "prompt": prompt,
                       "provenance": {**provenance, "nfe": n, "extracted": score.extracted}}
                (kept_f if score.correct else rej_f).write(json.dumps(row) + "\n")
                kept += bool(score.correct)
            for f in (kept_f, rej_f):  # a batch is on disk before the next one starts
                f.flush()
                os.fsync(f.fileno())
            _write_stats(out, previous + time.perf_counter() - t0, "teacher")
            bar.update(len(batch))
            bar.set_postfix(kept=kept)
    bar.close()
    return _finish(out, previous + time.perf_counter() - t0, "teacher")


def _previous_seconds(out: Path) -> float:
    return json.loads((out / STATS).read_text()).get("seconds", 0.0) if (out / STATS).exists() else 0.0


def _write_stats(out: Path, seconds: float, source: str) -> TrajectoryStats:
    stats = TrajectoryStats(
        kept=len(_read_jsonl(out / KEPT)), rejected=len(_read_jsonl(out / REJECTED)),
        seconds=seconds, path=str(out / KEPT), source=source,
    )
    tmp = out / f".{STATS}.tmp"
    tmp.write_text(json.dumps(asdict(stats), indent=2))
    tmp.replace(out / STATS)
    return stats


def _finish(out: Path, seconds: float, source: str) -> TrajectoryStats:
    return _write_stats(out, seconds, source)


def read_paper_dataset(path: str | Path) -> list[dict[str, Any]]:
    """Rows with ``question`` and ``llm_response`` from a JSONL/JSON/Parquet file or a saved HF dataset."""
    p = Path(path)
    if p.is_dir():
        import datasets

        ds = datasets.load_from_disk(str(p))
        if isinstance(ds, datasets.DatasetDict):
            ds = ds["train"] if "train" in ds else next(iter(ds.values()))
        rows = [dict(r) for r in ds]
    elif p.suffix == ".jsonl":
        rows = _read_jsonl(p)
    elif p.suffix == ".json":
        rows = json.loads(p.read_text())
    elif p.suffix == ".parquet":
        import pandas as pd

        rows = pd.read_parquet(p).to_dict("records")
    else:
        raise ValueError(f"dataset must be a .jsonl, .json or .parquet file or a saved HF dataset directory, got {path}")
    if not rows:
        raise ValueError(f"dataset {path} is empty")
    missing = {"question", "llm_response"} - set(rows[0])
    if missing:
        raise ValueError(f"dataset {path} lacks column(s) {sorted(missing)}; the paper's format has question, llm_response (got {sorted(rows[0])})")
    return rows


def import_dataset(path: str | Path, out_dir: str | Path) -> TrajectoryStats:
    """Copy a paper-format dataset into ``out_dir`` as the trajectories stage's output.

    Without a ``prompt`` column the question is used verbatim as the prompt, as
    the reference training script does (its questions carry the chat markup).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    rows = read_paper_dataset(path)
    with open(out / KEPT, "w") as f:
        for i, r in enumerate(rows):
            row = {"doc_id": str(r.get("doc_id", i)), "question": r["question"], "llm_response": r["llm_response"],
                   "prompt": r.get("prompt") or r["question"], "provenance": r.get("provenance") or {"source": str(path)}}
            f.write(json.dumps(row) + "\n")
    (out / REJECTED).write_text("")
    (out / STATS).unlink(missing_ok=True)
    (out / SETTINGS).unlink(missing_ok=True)
    return _finish(out, time.perf_counter() - t0, str(path))


def load_trajectories(out_dir: str | Path) -> list[dict[str, Any]]:
    """The kept rows of a finished trajectories stage."""
    rows = _read_jsonl(Path(out_dir) / KEPT)
    if not rows:
        raise ValueError(f"no trajectories in {Path(out_dir) / KEPT}; run the trajectories stage first")
    return rows
