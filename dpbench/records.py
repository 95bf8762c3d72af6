"""Run directories: file names, records, the manifest, traces, and the decode-a-batch step.

A run directory holds:

- ``manifest.json``: everything needed to rerun (task, model, sampler and its
  resolved params, seed, batch size, versions, device, git commit, command),
  written atomically.
- ``samples.jsonl``: one JSON object per scored sample, appended (flush +
  fsync) as soon as it is scored, so a killed run loses at most the line being
  written. A truncated last line is dropped on read.
- ``trace.jsonl``: the sampler trace (commit step, confidence and entropy per
  answer position) of the warm-up batch, for the certainty-convergence chart.
- ``lmeval_partial.jsonl`` (lm-eval engine only): each decoded request's
  record, appended per batch while lm-eval runs, reused on rerun.

Both engines (dpbench's own loop in `dpbench.runner`, lm-eval's in
`dpbench.lmeval`) decode through `decode_batch`, so they time and record a batch
the same way; everything that reads a run (reports, plots, compare) reads it here.

Timing rule (`decode_batch`): model loading is excluded; the call to
``sampler.generate`` is timed with a device synchronisation on both sides; the
batch's wall-clock is apportioned to its samples in proportion to their NFE
(``seconds_i = batch_seconds * nfe_i / sum(nfe)``): samples leave the batch when
they finish, so one that needed more forwards took part in more of them, and the
split keeps the sum equal to the measured time. ``batch_seconds`` and
``batch_size`` are recorded too, so other splits can be computed later.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from .errors import InputError
from .safefiles import LOCK, RunLocked, is_regular, open_append, read_regular, run_lock  # noqa: F401  (re-exported)

MANIFEST, SAMPLES, TRACE = "manifest.json", "samples.jsonl", "trace.jsonl"
LMEVAL_PARTIAL = "lmeval_partial.jsonl"  # the lm-eval engine's per-request records, written while decoding
# Manifest keys that define a run: a resume must match all of them. Anything
# else (limit, command line, timestamps) may differ between sessions.
IDENTITY_KEYS = ("task", "split", "model", "sampler", "params", "seed", "batch_size", "device", "dtype", "data_file")


class RunConfigMismatch(InputError):
    """The run directory already holds records of a different configuration."""


class CorruptRecords(InputError):
    """A records file holds a line that is not a record, or the same document twice."""


# -- records ----------------------------------------------------------------------------
def read_records(path: str | Path, *, repair: bool = False, unique: str | None = None) -> list[dict[str, Any]]:
    """Records of a JSONL file; a truncated last line (killed mid-write) is dropped.

    With ``repair`` the file itself is cut back to its last complete line, so
    appends continue on a clean line. A bad line elsewhere, a line that is not a
    JSON object, or (with ``unique``, e.g. ``"doc_id"``) a second record of the same
    key is a `CorruptRecords` error naming the line, checked before anything is repaired.
    """
    path = Path(path)
    if not path.exists():
        return []
    raw = read_regular(path, CorruptRecords)
    lines = raw.split(b"\n")
    records, good_bytes, seen = [], 0, {}
    for i, line in enumerate(lines):
        if not line.strip():
            good_bytes += len(line) + 1
            continue
        try:
            rec = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i < len(lines) - 1 and any(rest.strip() for rest in lines[i + 1 :]):
                raise CorruptRecords(f"{path}: line {i + 1} is not valid JSON and is not the last line") from None
            break  # the line a killed run was writing
        if not isinstance(rec, dict):
            raise CorruptRecords(f"{path}: line {i + 1} is not a record (a JSON {type(rec).__name__}, not an object)")
        if unique is not None:
            if unique not in rec:
                raise CorruptRecords(f"{path}: line {i + 1} is not a record (it has no {unique!r})")
            key = json.dumps(rec[unique], sort_keys=True, default=str)
            if key in seen:
                raise CorruptRecords(f"{path}: line {i + 1} repeats {unique} {rec[unique]!r} of line {seen[key]} "
                                     f"(two runs wrote into one directory?); remove one of them")
            seen[key] = i + 1
        records.append(rec)
        good_bytes += len(line) + 1
    good_bytes = min(good_bytes, len(raw))
    if repair and good_bytes < len(raw):
        with open(path, "r+b") as fh:
            fh.truncate(good_bytes)
    elif repair and raw and not raw.endswith(b"\n"):
        with open(path, "ab") as fh:  # complete JSON without its newline: just end the line
            fh.write(b"\n")
    return records


def read_samples(path: str | Path, *, repair: bool = False) -> list[dict[str, Any]]:
    """A ``samples.jsonl``: `read_records` with one record per ``doc_id``."""
    return read_records(path, repair=repair, unique="doc_id")


def dumps(record: dict[str, Any]) -> str:
    """One record as one JSONL line (with its newline)."""
    return json.dumps(record, ensure_ascii=False, default=str) + "\n"


def append_records(fh, records: Iterable[dict[str, Any]]) -> None:
    """Append ``records`` to the open file ``fh`` and make them durable before returning."""
    fh.write("".join(dumps(r) for r in records))
    fh.flush()
    os.fsync(fh.fileno())


def write_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` so that a crash leaves the old file or the new one, never half of one."""
    path = Path(path)
    # A fresh, unpredictable temporary name (mkstemp: O_EXCL), so no planted link is ever written through;
    # the rename replaces whatever ``path`` is (a link too) instead of following it.
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the manifest -------------------------------------------------------------------------
def read_manifest(out: str | Path) -> dict[str, Any]:
    path = Path(out) / MANIFEST
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); restore it or delete {Path(out)} to start over") from None


def write_manifest(out: str | Path, manifest: dict[str, Any]) -> None:
    write_atomic(Path(out) / MANIFEST, json.dumps(manifest, indent=2, default=str) + "\n")


def check_manifest(out: Path, new: dict[str, Any], param_defaults: dict[str, Any] | None = None) -> None:
    """Refuse to mix configurations in one run directory. A sampler param missing from an older
    manifest (added to dpbench since) counts as its default in ``param_defaults``."""
    out = Path(out)
    if not (out / MANIFEST).exists():
        for name in (SAMPLES, LMEVAL_PARTIAL):
            if (out / name).exists() and read_records(out / name):
                raise RunConfigMismatch(f"{out} holds {name} but no {MANIFEST}; refusing to add to records of unknown origin")
        return
    diffs = manifest_diff(read_manifest(out), new, param_defaults)
    if diffs:
        raise RunConfigMismatch(
            f"{out} already holds a run with a different configuration ({'; '.join(diffs)}). "
            f"Use another --out directory, or delete {out} to start over."
        )


def manifest_diff(old: dict[str, Any], new: dict[str, Any], param_defaults: dict[str, Any] | None = None) -> list[str]:
    """The identity keys on which two manifests differ, one phrase each (params named one by one)."""
    diffs = []
    for k in IDENTITY_KEYS:
        a, b = old.get(k), new.get(k)
        if k == "params" and isinstance(a, dict) and param_defaults:
            a = {**{p: v for p, v in param_defaults.items() if p in (b or {})}, **a}
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            diffs += [f"{k}.{p}: {a.get(p)!r} there, {b.get(p)!r} now" for p in sorted(set(a) | set(b)) if a.get(p) != b.get(p)]
        else:
            diffs.append(f"{k}: {a!r} there, {b!r} now")
    return diffs


def sandbox_notes(run_dirs: Iterable[str | Path]) -> list[str]:
    """What a report must say about how code-task verdicts were reached, once per fact.

    A weaker sandbox than the full one (no root, no namespaces: the manifest's
    ``sandbox.warning``) is said once for all runs it applies to; samples scored in
    program mode (the fallback, whose verdict the program itself reports) are
    counted per run.
    """
    warnings: dict[str, list[str]] = {}
    lines = []
    for d in map(Path, run_dirs):
        if not (d / MANIFEST).is_file():
            continue
        m = read_manifest(d)
        sb = m.get("sandbox") or (m.get("rescored") or {}).get("sandbox") or {}
        if sb.get("warning"):
            warnings.setdefault(str(sb["warning"]), []).append(d.name)
        recs = read_samples(d / SAMPLES)
        coded = [r for r in recs if isinstance(r.get("detail"), dict) and "status" in r["detail"]]
        fallback = [r for r in coded if r["detail"].get("mode", "program") != "split"]
        if fallback:
            lines.append(f"{d.name}: {len(fallback)} of {len(coded)} code samples were judged in program mode "
                         f"(their tests cannot run outside the program, or the run predates split mode): "
                         f"those verdicts come from the program itself")
    return [f"{w} (runs: {', '.join(names)})" for w, names in warnings.items()] + lines


def environment() -> dict[str, Any]:
    """Versions, platform, git commit and command line, for a manifest."""
    import torch
    import transformers

    from . import __version__

    versions = {"dpbench": __version__, "python": platform.python_version(), "torch": torch.__version__,
                "transformers": transformers.__version__}
    return {"versions": versions, "platform": platform.platform(), "git_commit": git_commit(),
            "command": " ".join(sys.argv)}


def git_commit() -> str | None:
    """HEAD of the checkout dpbench runs from (``-dirty`` if tracked files changed), None outside git."""
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


def device_info(device) -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"type": device.type, "torch_threads": torch.get_num_threads()}
    if device.type == "cuda":
        info["name"] = torch.cuda.get_device_name(device)
    else:
        info["name"] = platform.processor() or platform.machine()
        info["cpu_count"] = os.cpu_count()
        from .samplers.kernel import kernel_status

        info["step_kernel"] = kernel_status()  # whether CPU timings had the C step kernel
    return info


def model_info(lm) -> dict[str, Any]:
    n = sum(p.numel() for p in lm.module.parameters())
    return {"name": lm.name, "parameters": n, "mask_id": lm.mask_id, "eos_token_ids": list(lm.eos_token_ids),
            "class": type(lm.module).__name__}


def now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S%z")


# -- traces -------------------------------------------------------------------------------
def trace_row(tr, i: int, answer) -> dict[str, Any]:
    """Sample ``i`` of a sampler `Trace` as JSON-ready lists (NaN: never committed by a forward -> null)."""
    def clean(xs: list[float]) -> list[float | None]:
        return [None if x != x else round(x, 6) for x in xs]

    return {"tokens": answer.tolist(), "step": tr.step[i].tolist(),
            "confidence": clean(tr.confidence[i].tolist()), "entropy": clean(tr.entropy[i].tolist())}


def write_trace(path: Path, rows: list[dict[str, Any]]) -> None:
    """The trace file: one JSON object per traced sample (its record fields plus the trace lists)."""
    write_atomic(path, "".join(dumps(r) for r in rows))


def read_trace(run_dir: str | Path) -> list[dict[str, Any]]:
    return read_records(Path(run_dir) / TRACE)


# -- decoding one batch, timed ---------------------------------------------------------------
def sync(device) -> None:
    """Wait for the device's queued work (timing brackets every ``generate`` with this)."""
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def batch_generator(device, seed: int, first: int):
    """The generator a batch samples with: seeded by the run's seed and the batch's first document
    (its index in the run), so sampling at temperature > 0 repeats on rerun and resume."""
    import torch

    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + first)


def encode_prompts(tok, prompts: list[str], *, add_special_tokens: bool | None = None) -> dict[str, Any]:
    """Left-padded ids and attention mask. ``add_special_tokens`` default: only without a chat
    template (a template already writes the special tokens it wants)."""
    if tok.pad_token_id is None:  # left padding needs some id; the attention mask hides it
        tok.pad_token = tok.eos_token
    if add_special_tokens is None:
        add_special_tokens = not getattr(tok, "chat_template", None)
    return tok(prompts, return_tensors="pt", padding=True, padding_side="left", add_special_tokens=add_special_tokens)


def decode_batch(lm, tok, sampler, prompts: list[str], *, generator=None, trace: bool = False,
                 add_special_tokens: bool | None = None, stop=()) -> list[dict[str, Any]]:
    """Decode one batch of prompt strings, timed; one record (without doc id or score) per prompt.

    Fields: ``prompt_tokens``, ``gen_tokens`` (answer tokens before the first EOS),
    ``nfe``, ``seconds`` (the batch's time split by NFE, see the module doc),
    ``completion`` (the answer text before the first EOS), ``batch_seconds``,
    ``batch_size``, ``lb_tokens`` (generated tokens as the d3LLM leaderboard counts them:
    non-EOS answer tokens before the first of the ``stop`` strings, one sequence for the
    batch or one per prompt; `dpbench.textutil.leaderboard_token_count`); with ``trace``,
    ``trace`` (see `trace_row`).
    """
    import time as _time

    from .textutil import decode_answers, leaderboard_token_count

    enc = encode_prompts(tok, prompts, add_special_tokens=add_special_tokens)
    sync(lm.device)
    t0 = _time.perf_counter()
    res = sampler.generate(lm, enc["input_ids"], enc["attention_mask"], trace=trace, generator=generator)
    sync(lm.device)
    secs = _time.perf_counter() - t0
    answers = res.answers.cpu()
    texts, n_tok = decode_answers(tok, answers, lm.eos_token_ids)
    nfe = res.nfe.cpu().tolist()
    total = max(sum(nfe), 1)
    stops = [stop] * len(prompts) if not stop or isinstance(stop[0], str) else list(stop)
    rows = []
    for i, text in enumerate(texts):
        row = {"prompt_tokens": int(enc["attention_mask"][i].sum()), "gen_tokens": int(n_tok[i]), "nfe": int(nfe[i]),
               "seconds": secs * nfe[i] / total, "completion": text, "batch_seconds": secs, "batch_size": len(prompts),
               "lb_tokens": leaderboard_token_count(tok, answers[i].tolist(), lm.eos_token_ids, stops[i] or ())}
        if trace and res.trace is not None:
            row["trace"] = trace_row(res.trace, i, answers[i])
        rows.append(row)
    return rows


def mean(xs) -> float:
    xs = [float(x) for x in xs]
    return sum(xs) / len(xs) if xs else float("nan")


__all__ = [
    "IDENTITY_KEYS", "LMEVAL_PARTIAL", "LOCK", "MANIFEST", "SAMPLES", "TRACE", "CorruptRecords", "RunConfigMismatch",
    "RunLocked", "append_records", "open_append", "read_samples", "run_lock", "sandbox_notes",
    "batch_generator", "check_manifest", "decode_batch", "device_info", "dumps", "encode_prompts", "environment",
    "git_commit", "manifest_diff", "mean", "model_info", "read_manifest", "read_records", "read_trace", "sync",
    "trace_row", "write_atomic", "write_manifest", "write_trace",
]
