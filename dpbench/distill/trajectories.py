"""Stage 1: the teacher's own correct answers on the task's training prompts.

The teacher decodes each training prompt with the ``baseline`` sampler at the
task's default parameters (the paper: gen 256, block 32, steps 256); answers
the task scores as correct are kept, the rest are logged and dropped. The
dataset is JSONL in the paper's format (``question``, ``llm_response``) plus
the exact ``prompt`` the teacher saw and a ``provenance`` record. The stage is
resumable: documents already in either file are skipped.

An existing dataset in the paper's format (JSONL/JSON/Parquet file, or a
directory written by ``datasets.save_to_disk``) can be imported instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ..models.adapter import DiffusionLM
from ..samplers import get_sampler
from ..textutil import decode_answers

KEPT, REJECTED, STATS = "trajectories.jsonl", "rejected.jsonl", "stats.json"


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


def decode(lm: DiffusionLM, tokenizer, prompts: list[str], sampler) -> tuple[list[str], list[int]]:
    """Completions (text before the first EOS) and per-sample NFE for a batch of prompts."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else lm.eos_id
    ids, attn = encode_left_padded(tokenizer, prompts, pad)
    out = sampler.generate(lm, ids, attn)
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
    teacher: str = "",
    progress: bool = True,
) -> TrajectoryStats:
    """Decode the task's ``split`` prompts with ``baseline``; keep the correct answers."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sampler_params = {**task.params_for("baseline"), **(params or {})}
    sampler = get_sampler("baseline", **sampler_params)
    docs = task.docs(split=split, limit=limit)
    if not docs:
        raise ValueError(f"task {task.name!r} has no documents in split {split!r}")
    done = {r["doc_id"] for r in _read_jsonl(out / KEPT) + _read_jsonl(out / REJECTED)}
    todo = [d for d in docs if d.doc_id not in done]
    provenance = {"teacher": teacher or lm.name, "task": task.name, "split": split,
                  "sampler": "baseline", "params": sampler.params()}
    t0 = time.perf_counter()
    bar = tqdm(total=len(docs), initial=len(docs) - len(todo), desc="trajectories", disable=not progress)
    kept = len(done) and len(_read_jsonl(out / KEPT))
    with open(out / KEPT, "a") as kept_f, open(out / REJECTED, "a") as rej_f:
        for i in range(0, len(todo), batch_size):
            batch = todo[i : i + batch_size]
            prompts = [task.build_prompt(d, tokenizer) for d in batch]
            texts, nfe = decode(lm, tokenizer, prompts, sampler)
            for doc, prompt, text, n in zip(batch, prompts, texts, nfe):
                score = task.score(doc, text)
                row = {"doc_id": doc.doc_id, "question": doc.question, "llm_response": text, "prompt": prompt,
                       "provenance": {**provenance, "nfe": n, "extracted": score.extracted}}
                (kept_f if score.correct else rej_f).write(json.dumps(row) + "\n")
                kept += bool(score.correct)
            kept_f.flush()
            rej_f.flush()
            bar.update(len(batch))
            bar.set_postfix(kept=kept)
    bar.close()
    return _finish(out, time.perf_counter() - t0, "teacher")


def _finish(out: Path, seconds: float, source: str) -> TrajectoryStats:
    previous = json.loads((out / STATS).read_text()) if (out / STATS).exists() else {}
    stats = TrajectoryStats(
        kept=len(_read_jsonl(out / KEPT)), rejected=len(_read_jsonl(out / REJECTED)),
        seconds=previous.get("seconds", 0.0) + seconds, path=str(out / KEPT), source=source,
    )
    (out / STATS).write_text(json.dumps(asdict(stats), indent=2))
    return stats


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
    return _finish(out, time.perf_counter() - t0, str(path))


def load_trajectories(out_dir: str | Path) -> list[dict[str, Any]]:
    """The kept rows of a finished trajectories stage."""
    rows = _read_jsonl(Path(out_dir) / KEPT)
    if not rows:
        raise ValueError(f"no trajectories in {Path(out_dir) / KEPT}; run the trajectories stage first")
    return rows
