"""Run task x model x sampler and write one record per scored sample.

A run directory holds:

- ``manifest.json``: everything needed to rerun (task, model, sampler and its
  resolved params, seed, batch size, versions, device, git commit, command).
- ``samples.jsonl``: one JSON object per scored sample, appended (flush +
  fsync) as soon as it is scored, so a killed run loses at most the line being
  written. Rerunning the same config resumes: finished ``doc_id``s are skipped
  and a truncated last line is dropped. A different config is refused.
- ``trace.jsonl``: the sampler trace (commit step, confidence and entropy per
  answer position) of the warm-up batch, for the certainty-convergence chart.
- ``lmeval_partial.jsonl`` (lm-eval engine only): each decoded request's
  record, appended (flush + fsync) per batch while lm-eval runs; a rerun
  reuses them instead of decoding again (see `_run_lmeval`).

Timing. Model loading is excluded. Before the timed batches, one warm-up batch
(the first ``trace_samples`` pending documents, run with tracing) is decoded
and not recorded. Each
timed batch is measured around ``sampler.generate`` with
``torch.cuda.synchronize()`` on GPU. The batch's wall-clock is apportioned to
its samples in proportion to their NFE: ``seconds_i = batch_seconds * nfe_i /
sum(nfe)``. Samples leave the batch when they finish, so a sample that needed
more forward passes took part in more of the batch's forwards; the split keeps
the sum of ``seconds`` equal to the measured wall-clock. ``batch_seconds`` and
``batch_size`` are recorded too, so other splits can be computed later.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

MANIFEST, SAMPLES, TRACE = "manifest.json", "samples.jsonl", "trace.jsonl"
LMEVAL_PARTIAL = "lmeval_partial.jsonl"  # the lm-eval engine's per-request records, written while decoding
# Manifest keys that define a run: a resume must match all of them. Anything
# else (limit, command line, timestamps) may differ between sessions.
IDENTITY_KEYS = ("task", "split", "model", "sampler", "params", "seed", "batch_size", "device", "dtype", "data_file")


class RunConfigMismatch(ValueError):
    """The run directory already holds records of a different configuration."""


@dataclass
class RunConfig:
    task: str
    model: str
    sampler: str
    params: dict[str, Any] = field(default_factory=dict)  # user overrides (strings from the CLI are fine)
    out: str | None = None  # run directory; default results/runs/<task>-<model>-<sampler>-<params>
    limit: int | None = None
    batch_size: int = 16
    seed: int = 0
    split: str = "test"
    device: str | None = None
    dtype: str | None = None
    trace_samples: int = 8  # warm-up batch size; its sampler traces are saved (0: warm up on one sample, no trace)
    data_file: str | None = None  # local JSONL for tasks with hub data (gsm8k, minerva_math, mbpp)
    engine: str = "auto"  # "lmeval": through lm_eval.simple_evaluate; "dpbench": own loop; auto: lmeval if the task has one
    progress: bool = True


@dataclass
class RunSummary:
    out: Path
    n: int  # records in the run directory (old and new)
    new: int  # records written by this call
    accuracy: float
    mean_nfe: float

    def __str__(self) -> str:
        return f"{self.out}: n={self.n} (new {self.new}) accuracy={self.accuracy:.1%} mean_nfe={self.mean_nfe:.2f}"


def build_sampler(task, name: str, user_params: dict[str, Any]):
    """``get_sampler(name, **{**task params it accepts, **user params})``.

    Task defaults a sampler does not take (``steps`` for a threshold sampler)
    are dropped; unknown user params still raise ``ValueError``.
    """
    from .samplers import get_sampler
    from .samplers.registry import sampler_class, sampler_params

    canonical = sampler_class(name).name
    valid = sampler_params(canonical)
    task_params = {k: v for k, v in task.params_for(canonical).items() if k in valid}
    return get_sampler(canonical, **{**task_params, **user_params})


def default_out(cfg: RunConfig, params: dict[str, Any]) -> Path:
    slug = Path(cfg.model.rstrip("/")).name or "model"
    keys = ("steps", "threshold")
    tag = "-".join(f"{k}{params[k]}" for k in keys if k in params)
    return Path("results/runs") / "-".join(p for p in (cfg.task, slug, cfg.sampler, tag) if p)


def read_records(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """Records of ``samples.jsonl``; a truncated last line (killed mid-write) is dropped.

    With ``repair`` the file itself is cut back to its last complete line, so
    appends continue on a clean line. A bad line elsewhere is an error.
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    records, good_bytes = [], 0
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1 and any(rest.strip() for rest in lines[i + 1 :]):
                raise ValueError(f"{path}: line {i + 1} is not valid JSON and is not the last line") from None
            break  # the line a killed run was writing
        good_bytes += len(line) + 1
    good_bytes = min(good_bytes, len(raw))
    if repair and good_bytes < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    elif repair and raw and not raw.endswith(b"\n"):
        with open(path, "ab") as fh:  # complete JSON without its newline: just end the line
            fh.write(b"\n")
    return records


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old file or the new one, never half of one."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def environment() -> dict[str, Any]:
    import transformers

    from . import __version__

    versions = {"dpbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__}
    return {"versions": versions, "platform": platform.platform(), "git_commit": _git_commit(),
            "command": " ".join(sys.argv)}


def _git_commit() -> str | None:
    try:
        root = Path(__file__).resolve().parent.parent
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5)
        if out.returncode:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["name"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
        from .samplers.kernel import kernel_status

        info["step_kernel"] = kernel_status()  # whether CPU timings had the C step kernel
    return info


def check_manifest(out: Path, new: dict[str, Any], param_defaults: dict[str, Any] | None = None) -> None:
    """Refuse to mix configurations in one run directory. A sampler param missing from an older
    manifest (added to dpbench since) counts as its default in ``param_defaults``."""
    path = out / MANIFEST
    if not path.exists():
        for name in (SAMPLES, LMEVAL_PARTIAL):
            if (out / name).exists() and read_records(out / name):
                raise RunConfigMismatch(f"{out} holds {name} but no {MANIFEST}; refusing to add to records of unknown origin")
        return
    old = json.loads(path.read_text())
    diffs = []
    for k in IDENTITY_KEYS:
        a, b = old.get(k), new.get(k)
        if k == "params" and isinstance(a, dict) and param_defaults:
            a = {**{p: v for p, v in param_defaults.items() if p in (b or {})}, **a}
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):  # name only the params that differ
            diffs += [f"{k}.{p}: {a.get(p)!r} there, {b.get(p)!r} now" for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]
        else:
            diffs.append(f"{k}: {a!r} there, {b!r} now")
    if diffs:
        raise RunConfigMismatch(
            f"{out} already holds a run with a different configuration ({'; '.join(diffs)}). "
            f"Use another --out directory, or delete {out} to start over."
        )


def run(cfg: RunConfig) -> RunSummary:
    """Run ``cfg`` (resuming its directory if it exists) and return a summary.

    Under a multi-process launcher (torchrun, accelerate launch) documents are
    sharded over ranks; see `dpbench.distributed`.
    """
    from .distributed import init_distributed, merge_rank_records, rank_file
    from .models import load_model, resolve_device, resolve_dtype

    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    task = _get_task(cfg)
    sampler = build_sampler(task, cfg.sampler, cfg.params)
    params = sampler.params()
    dist = init_distributed(cfg.device)
    device = resolve_device(cfg.device)
    if dist.world_size > 1 and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
    dtype = resolve_dtype(cfg.dtype, device)
    out = Path(cfg.out) if cfg.out else default_out(cfg, params)
    manifest = {
        "task": cfg.task, "split": cfg.split, "model": cfg.model, "sampler": sampler.name, "params": params,
        "seed": cfg.seed, "batch_size": cfg.batch_size, "device": device.type, "dtype": str(dtype).removeprefix("torch."),
        "data_file": str(Path(cfg.data_file).resolve()) if cfg.data_file else None,
        "limit": cfg.limit, "trace_samples": cfg.trace_samples, "world_size": dist.world_size,
    }
    check_manifest(out, manifest, type(sampler).param_defaults())

    docs = task.docs(cfg.split, cfg.limit)
    order = {d.doc_id: i for i, d in enumerate(docs)}
    if dist.is_main and out.exists():
        merge_rank_records(out, order, read_records)  # rank files left by an interrupted data-parallel run
    dist.barrier()
    records = read_records(out / SAMPLES, repair=dist.is_main)
    done = {r["doc_id"] for r in records}
    pending = [d for d in docs if d.doc_id not in done]
    mine = pending[dist.rank :: dist.world_size]

    engine = _engine(cfg, task, dist.world_size)
    lm, tok = load_model(cfg.model, device=device, dtype=dtype)
    if dist.is_main:
        out.mkdir(parents=True, exist_ok=True)
        manifest.update(environment(), device_info=device_info(device), model_info=_model_info(lm),
                        updated=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (out / MANIFEST).write_text(json.dumps(manifest, indent=2, default=str) + "\n")
    dist.barrier()

    if engine == "lmeval":
        return _run_lmeval(cfg, task, sampler, lm, tok, out, records, pending)
    new = 0
    target = out / SAMPLES if dist.world_size == 1 else rank_file(out, dist.rank)
    if mine:
        torch.manual_seed(cfg.seed)
        batches = [mine[i : i + cfg.batch_size] for i in range(0, len(mine), cfg.batch_size)]
        # Warm-up: the first batch, untimed and unrecorded; its trace feeds the convergence chart.
        if dist.is_main and not (out / TRACE).exists() and cfg.trace_samples > 0:
            warm = _generate(lm, tok, task, sampler, batches[0][: cfg.trace_samples], cfg, order, trace=True)
            _write_trace(out / TRACE, task, warm, tok)
        else:
            _generate(lm, tok, task, sampler, batches[0][: cfg.trace_samples or 1], cfg, order, trace=False)
        bar = tqdm(total=len(done) + len(mine) if dist.world_size == 1 else len(mine), initial=len(done) if dist.world_size == 1 else 0,
                   desc=f"{cfg.task}/{sampler.name}" + (f" rank {dist.rank}" if dist.world_size > 1 else ""),
                   disable=not cfg.progress, dynamic_ncols=True)
        with open(target, "a", encoding="utf-8") as fh:
            for batch in batches:
                for doc, row in _generate(lm, tok, task, sampler, batch, cfg, order, trace=False):
                    score = task.score(doc, row["completion"])
                    row = {"doc_id": row.pop("doc_id"), "correct": bool(score.correct), "extracted": score.extracted,
                           "target": doc.target, **row}
                    if score.detail:
                        row["detail"] = score.detail
                    fh.write(json.dumps(row, ensure_ascii=False, default=str) + "\n")
                    fh.flush()
                    os.fsync(fh.fileno())  # on disk before the next sample: a kill loses at most this line
                    records.append(row)
                    new += 1
                    bar.update(1)
                bar.set_postfix(acc=f"{_mean(r['correct'] for r in records):.1%}",
                                nfe=f"{_mean(r['nfe'] for r in records):.1f}")
        bar.close()
    if dist.world_size > 1:
        dist.barrier()
        if dist.is_main:
            merge_rank_records(out, order, read_records)
            records = read_records(out / SAMPLES)
        dist.barrier()
    return RunSummary(out, len(records), new, _mean(r["correct"] for r in records), _mean(r["nfe"] for r in records))


ENGINES = ("auto", "dpbench", "lmeval")


def _engine(cfg: RunConfig, task, world_size: int) -> str:
    if cfg.engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")
    has_lmeval = bool(getattr(task, "lmeval_task", None))
    if cfg.engine == "lmeval" and not has_lmeval:
        raise ValueError(f"task {cfg.task!r} has no lm-eval definition; use --engine dpbench")
    engine = "lmeval" if cfg.engine == "lmeval" or (cfg.engine == "auto" and has_lmeval) else "dpbench"
    if engine == "lmeval" and world_size > 1:
        if cfg.engine == "lmeval":
            raise ValueError("--engine lmeval runs in one process here; use --engine dpbench for data-parallel runs")
        engine = "dpbench"  # same prompts and scorer, sharded by dpbench
    return engine


def _run_lmeval(cfg: RunConfig, task, sampler, lm, tok, out: Path, records: list, pending: list) -> RunSummary:
    """Run through ``lm_eval.simple_evaluate`` (dpbench's task YAMLs) and write its joined records.

    Resumable per request: while lm-eval runs, `DPBenchLM` appends each decoded
    request's record to ``lmeval_partial.jsonl`` (flush + fsync per batch). A
    rerun of the same config (the manifest check has passed) decodes only the
    requests without a record there; the others get their stored completion and
    record (original NFE and seconds) back, keyed by task, doc_id and a hash of
    the prompt, the request's arguments and the sampler config, so a changed
    request is decoded again. lm-eval then scores all of them and ``samples.jsonl``
    is (re)written whole, atomically. A crash loses at most the batch in flight.
    A finished run (every document in ``samples.jsonl``) is returned as is; a
    higher ``limit`` reuses the earlier requests and decodes the new ones.
    ``new`` counts the requests decoded by this call.
    """
    from .lmeval import DPBenchLM
    from .lmeval.tasks import evaluate

    if records and not pending:
        return RunSummary(out, len(records), 0, _mean(r["correct"] for r in records), _mean(r["nfe"] for r in records))
    model = DPBenchLM(lm=lm, tokenizer=tok, sampler=sampler, batch_size=cfg.batch_size, seed=cfg.seed,
                      records_path=str(out / LMEVAL_PARTIAL), resume=True)
    res = evaluate(model, cfg.task, data_file=cfg.data_file, limit=cfg.limit, workdir=out / "lmeval_tasks")
    write_atomic(out / SAMPLES, "".join(json.dumps(rec, ensure_ascii=False, default=str) + "\n" for rec in res.records))
    if res.results is not None:
        (out / "lmeval_results.json").write_text(json.dumps(res.results.get("results", {}), indent=2, default=str))
    recs = res.records
    new = len(recs) - model.reused
    return RunSummary(out, len(recs), new, _mean(r["correct"] for r in recs), _mean(r["nfe"] for r in recs))


def _get_task(cfg: RunConfig):
    from .tasks import get_task

    if cfg.data_file is None:
        return get_task(cfg.task)
    try:
        return get_task(cfg.task, data_file=cfg.data_file)
    except TypeError:
        raise ValueError(f"task {cfg.task!r} is built in and takes no --data-file") from None


def _generate(lm, tok, task, sampler, batch, cfg: RunConfig, order, *, trace: bool) -> list[tuple[Any, dict[str, Any]]]:
    """Decode one left-padded batch; return (doc, record without the score) pairs.

    With ``trace`` each record carries the sampler trace under ``"trace"``.
    """
    from .textutil import decode_answers

    prompts = [task.build_prompt(d, tok) for d in batch]
    enc = _tokenize(tok, prompts)
    # Seeded by the batch's first document, so sampling at temperature > 0 repeats on rerun.
    gen = torch.Generator(device=lm.device).manual_seed(cfg.seed * 1_000_003 + order[batch[0].doc_id])
    _sync(lm.device)
    t0 = time.perf_counter()
    res = sampler.generate(lm, enc["input_ids"], enc["attention_mask"], trace=trace, generator=gen)
    _sync(lm.device)
    secs = time.perf_counter() - t0

    answers = res.answers.cpu()
    texts, n_tok = decode_answers(tok, answers, lm.eos_token_ids)
    nfe = res.nfe.cpu()
    total_nfe = max(int(nfe.sum()), 1)
    out = []
    for i, doc in enumerate(batch):
        row = {
            "doc_id": doc.doc_id,
            "prompt_tokens": int(enc["attention_mask"][i].sum()),
            "gen_tokens": int(n_tok[i]),
            "nfe": int(nfe[i]),
            "seconds": secs * int(nfe[i]) / total_nfe,
            "completion": texts[i],
            "batch_seconds": secs,
            "batch_size": len(batch),
        }
        if trace and res.trace is not None:
            row["trace"] = _trace_row(res.trace, i, answers[i])
        out.append((doc, row))
    return out


def _tokenize(tok, prompts: list[str]) -> dict[str, torch.Tensor]:
    if tok.pad_token_id is None:  # left padding needs some id; the attention mask hides it
        tok.pad_token = tok.eos_token
    # A chat template already writes the special tokens it wants (BOS, roles).
    add_special = not getattr(tok, "chat_template", None)
    return tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=add_special)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def _trace_row(tr, i: int, answer: torch.Tensor) -> dict[str, Any]:
    def clean(xs: list[float]) -> list[float | None]:
        return [None if x != x else round(x, 6) for x in xs]  # NaN (never committed by a forward) -> null

    return {"tokens": answer.tolist(), "step": tr.step[i].tolist(),
            "confidence": clean(tr.confidence[i].tolist()), "entropy": clean(tr.entropy[i].tolist())}


def _write_trace(path: Path, task, pairs: list[tuple[Any, dict[str, Any]]], tok) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for doc, row in pairs:
            if "trace" not in row:
                continue
            t = {k: row[k] for k in ("doc_id", "nfe", "gen_tokens", "completion")}
            t["correct"] = bool(task.score(doc, row["completion"]).correct)
            t.update(row["trace"], token_text=[tok.decode([x]) for x in row["trace"]["tokens"]])
            fh.write(json.dumps(t, ensure_ascii=False) + "\n")


def _model_info(lm) -> dict[str, Any]:
    from .models.llada import count_parameters

    return {"name": lm.name, "parameters": count_parameters(lm.module), "mask_id": lm.mask_id,
            "eos_token_ids": list(lm.eos_token_ids), "class": type(lm.module).__name__}


def _mean(xs) -> float:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else float("nan")


def read_trace(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / TRACE
    return read_records(path) if path.exists() else []


__all__ = ["RunConfig", "RunConfigMismatch", "RunSummary", "build_sampler", "read_records", "read_trace", "run"]
