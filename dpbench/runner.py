"""Run task x model x sampler and write one record per scored sample.

The run directory's files, the manifest and the timing rule are `dpbench.records`'.
Rerunning the same config resumes: finished ``doc_id``s are skipped and a
truncated last line is dropped. A different config is refused.

Before the timed batches, one warm-up batch (the first ``trace_samples``
pending documents, run with tracing) is decoded and not recorded; its trace
feeds the certainty-convergence chart.
"""

from __future__ import annotations

import json
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import records as rec
from .errors import InputError
from .records import LMEVAL_PARTIAL, MANIFEST, SAMPLES, TRACE, RunConfigMismatch, RunLocked, read_records, read_trace

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


def default_out(cfg: RunConfig, params: dict[str, Any]) -> Path:
    slug = Path(cfg.model.rstrip("/")).name or "model"
    keys = ("steps", "threshold")
    tag = "-".join(f"{k}{params[k]}" for k in keys if k in params)
    return Path("results/runs") / "-".join(p for p in (cfg.task, slug, cfg.sampler, tag) if p)


def run(cfg: RunConfig) -> RunSummary:
    """Run ``cfg`` (resuming its directory if it exists) and return a summary.

    Under a multi-process launcher (torchrun, accelerate launch) documents are
    sharded over ranks; see `dpbench.distributed`. Everything that can be checked
    is checked before anything is written: the arguments, the device, the data (at
    least one document), the run directory (not in use by another process, same
    configuration, no corrupt records), the model, and that every prompt plus
    ``gen_length`` fits the model. The directory stays locked while the run writes.
    """
    from .samplers import build_sampler

    _check_args(cfg)
    task = _get_task(cfg)
    sampler = build_sampler(cfg.sampler, cfg.params, task=task)  # bad names and params fail here, before loading

    import torch
    from tqdm.auto import tqdm

    from .distributed import init_distributed, merge_rank_records, rank_file
    from .models import load_model, resolve_device, resolve_dtype
    params = sampler.params()
    device = resolve_device(cfg.device)  # an unknown or absent device fails before the process group starts
    dist = init_distributed(cfg.device)
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
    engine = _engine(cfg, task, dist.world_size)
    docs = task.docs(cfg.split, cfg.limit)
    if not docs:
        where = f" (data file {cfg.data_file} holds none)" if cfg.data_file else ""
        raise InputError(f"task {cfg.task!r} split {cfg.split!r} has no documents{where}; nothing to run")
    _sandbox_for(task, out, manifest)

    with rec.run_lock(out) if dist.is_main else nullcontext():
        rec.check_manifest(out, manifest, type(sampler).param_defaults())
        order = {d.doc_id: i for i, d in enumerate(docs)}
        seen = {r["doc_id"] for r in rec.read_samples(out / SAMPLES)}  # read only: validated, not yet repaired
        for part in sorted(out.glob("samples.rank*.jsonl")):
            seen |= {r["doc_id"] for r in rec.read_samples(part)}
        lm, tok = load_model(cfg.model, device=device, dtype=dtype)
        _check_lengths(lm, tok, task, [d for d in docs if d.doc_id not in seen], params.get("gen_length"))
        # -- from here on the run directory is written --
        if dist.is_main:
            merge_rank_records(out, order)  # rank files left by an interrupted data-parallel run
            rec.read_samples(out / SAMPLES, repair=True)
            manifest.update(rec.environment(), device_info=rec.device_info(device), model_info=rec.model_info(lm),
                            updated=rec.now())
            rec.write_manifest(out, manifest)
        dist.barrier()
        records = rec.read_samples(out / SAMPLES)
        before = len(records)
        done = {r["doc_id"] for r in records}
        pending = [d for d in docs if d.doc_id not in done]
        mine = pending[dist.rank :: dist.world_size]
        if engine == "lmeval":
            return _run_lmeval(cfg, task, sampler, lm, tok, out, records, pending)
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
            solo = dist.world_size == 1
            bar = tqdm(total=len(done) + len(mine) if solo else len(mine), initial=len(done) if solo else 0,
                       desc=f"{cfg.task}/{sampler.name}" + ("" if solo else f" rank {dist.rank}"),
                       disable=not cfg.progress, dynamic_ncols=True)
            with rec.open_append(target) as fh:
                for batch in batches:
                    for doc, row in _generate(lm, tok, task, sampler, batch, cfg, order, trace=False):
                        score = task.score(doc, row["completion"])
                        row = {"doc_id": row.pop("doc_id"), "correct": bool(score.correct), "extracted": score.extracted,
                               "target": doc.target, **row}
                        if score.detail:
                            row["detail"] = score.detail
                        rec.append_records(fh, [row])  # on disk before the next sample: a kill loses at most this line
                        records.append(row)
                        bar.update(1)
                    bar.set_postfix(acc=f"{rec.mean(r['correct'] for r in records):.1%}",
                                    nfe=f"{rec.mean(r['nfe'] for r in records):.1f}")
            bar.close()
        if dist.world_size > 1:
            dist.barrier()
            if dist.is_main:
                merge_rank_records(out, order)
                records = rec.read_samples(out / SAMPLES)  # every rank's records: the summary counts them all
            dist.barrier()
    return RunSummary(out, len(records), len(records) - before, rec.mean(r["correct"] for r in records),
                      rec.mean(r["nfe"] for r in records))


def _check_args(cfg: RunConfig) -> None:
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if cfg.limit is not None and cfg.limit < 1:
        raise ValueError(f"limit must be >= 1 (or None for every document), got {cfg.limit}")
    if cfg.trace_samples < 0:
        raise ValueError(f"trace_samples must be >= 0, got {cfg.trace_samples}")
    if cfg.engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {cfg.engine!r}")


def _sandbox_for(task, out: Path, manifest: dict[str, Any]) -> None:
    """Code tasks: hide the run directory from the programs too, and record the sandbox in the manifest."""
    from .tasks.code import CodeTask

    if isinstance(task, CodeTask):
        from dataclasses import replace

        from .execution import describe

        task.sandbox = replace(task.sandbox, hidden=(*task.sandbox.hidden, str(out.resolve())))
        manifest["sandbox"] = describe(task.sandbox)


def _check_lengths(lm, tok, task, docs: list, gen_length: int | None) -> None:
    """Refuse (before decoding or writing) when a prompt plus the answer cannot fit the model."""
    if gen_length is None or lm.max_positions is None or not docs:
        return
    longest, which = 0, None
    for i in range(0, len(docs), 256):
        chunk = docs[i : i + 256]
        lengths = rec.encode_prompts(tok, [task.build_prompt(d, tok) for d in chunk])["attention_mask"].sum(1).tolist()
        j = max(range(len(chunk)), key=lengths.__getitem__)
        if lengths[j] > longest:
            longest, which = int(lengths[j]), chunk[j].doc_id
    try:
        lm.check_length(longest, int(gen_length))
    except InputError as err:
        raise InputError(f"document {which!r}: {err}") from None


ENGINES = ("auto", "dpbench", "lmeval")


def _engine(cfg: RunConfig, task, world_size: int) -> str:
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
        return RunSummary(out, len(records), 0, rec.mean(r["correct"] for r in records), rec.mean(r["nfe"] for r in records))
    model = DPBenchLM(lm=lm, tokenizer=tok, sampler=sampler, batch_size=cfg.batch_size, seed=cfg.seed,
                      records_path=str(out / LMEVAL_PARTIAL), resume=True)
    res = evaluate(model, cfg.task, data_file=cfg.data_file, limit=cfg.limit, workdir=out / "lmeval_tasks")
    rec.write_atomic(out / SAMPLES, "".join(rec.dumps(r) for r in res.records))
    if res.results is not None:
        rec.write_atomic(out / "lmeval_results.json", json.dumps(res.results.get("results", {}), indent=2, default=str))
    recs = res.records
    new = len(recs) - model.reused
    return RunSummary(out, len(recs), new, rec.mean(r["correct"] for r in recs), rec.mean(r["nfe"] for r in recs))


def _get_task(cfg: RunConfig):
    from .tasks import get_task

    if cfg.data_file is None:
        return get_task(cfg.task)
    try:
        return get_task(cfg.task, data_file=cfg.data_file)
    except TypeError:
        raise ValueError(f"task {cfg.task!r} is built in and takes no --data-file") from None


def _generate(lm, tok, task, sampler, batch, cfg: RunConfig, order, *, trace: bool) -> list[tuple[Any, dict[str, Any]]]:
    """Decode one batch of documents; return (doc, record without the score) pairs."""
    prompts = [task.build_prompt(d, tok) for d in batch]
    gen = rec.batch_generator(lm.device, cfg.seed, order[batch[0].doc_id])
    rows = rec.decode_batch(lm, tok, sampler, prompts, generator=gen, trace=trace, stop=tuple(getattr(task, "stop", ())))
    return [(doc, {"doc_id": doc.doc_id, **row}) for doc, row in zip(batch, rows)]


def _write_trace(path: Path, task, pairs: list[tuple[Any, dict[str, Any]]], tok) -> None:
    out = []
    for doc, row in pairs:
        if "trace" not in row:
            continue
        t = {k: row[k] for k in ("doc_id", "nfe", "gen_tokens", "completion")}
        t["correct"] = bool(task.score(doc, row["completion"]).correct)
        t.update(row["trace"], token_text=[tok.decode([x]) for x in row["trace"]["tokens"]])
        out.append(t)
    rec.write_trace(path, out)


__all__ = ["RunConfig", "RunConfigMismatch", "RunLocked", "RunSummary", "read_records", "read_trace", "run"]
