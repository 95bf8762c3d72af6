"""`dpbench bench`: wall-clock, throughput, sampler overhead and memory of decoders, side by side.

Every combination of sampler x cache x batch size x prompt length decodes the
same task prompts. Combinations are measured round-robin, one batch each in
turn, after one warm-up batch each, so a load spike on a shared machine hits
all of them alike and the ratios between them stay trustworthy.

Per combination:
- latency p50/p95: seconds of one `generate` call (every sample of a batch waits for all of it);
- seconds per sample, throughput (answer tokens before EOS per second);
- NFE per sample, tokens per forward (answer tokens / NFE), forward tokens per sample
  (query positions run through the model: what a KV cache saves);
- time per forward and sampler overhead: the model's forward calls are timed
  (synchronised on CUDA); overhead = 1 - forward time / wall-clock, and the time outside
  the model per forward call in microseconds (which carries over to a model of another size);
- peak memory: CUDA max allocated on GPU, peak RSS on CPU (reset per combination where Linux allows);
- accuracy on the task, and agreement with the uncached run (same answer text).
"""

from __future__ import annotations

import itertools
import json
import os
import random
import resource
import statistics
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import torch
from tqdm.auto import tqdm

from .models.adapter import DiffusionLM
from .params import cache_spec as cache_params
from .records import sync as _sync
from .records import write_atomic
from .samplers.kernel import kernel_status

PROMPT_FILLS = ("fewshot", "pad")
STEP_PATHS = ("kernel", "tensor")
COLUMNS = [
    ("sampler", "sampler"), ("cache", "cache"), ("step", "step"), ("batch_size", "batch"), ("prompt_positions_mean", "prompt len"),
    ("latency_p50_s", "latency p50 s"), ("latency_p95_s", "latency p95 s"), ("seconds_per_sample", "s/sample"),
    ("throughput_tok_s", "tok/s"), ("nfe_mean", "NFE"), ("tokens_per_forward", "tok/fwd"),
    ("forward_tokens_per_sample", "fwd tok/sample"), ("ms_per_forward", "ms/fwd"),
    ("sampler_overhead", "overhead"), ("overhead_us_per_forward", "us outside/fwd"), ("peak_mem_mb", "peak MB"), ("accuracy", "accuracy"),
    ("answer_agreement_with_none", "answer = none"), ("agreement_with_none", "text = none"),
    ("speedup_vs_none", "speedup"),
]


@dataclass
class BenchConfig:
    model: str = "tiny-arith"
    samplers: list[str] = field(default_factory=lambda: ["dparallel"])
    params: dict[str, Any] = field(default_factory=dict)  # sampler params on top of the task's defaults
    caches: list[str] = field(default_factory=lambda: ["none"])
    # How a step runs: "kernel" (the C step kernel where it applies, as `dpbench run` does) or "tensor".
    step_paths: list[str] = field(default_factory=lambda: ["kernel"])
    batch_sizes: list[int] = field(default_factory=lambda: [1])
    prompt_tokens: list[int | None] = field(default_factory=lambda: [None])  # None: the task's own prompts
    prompt_fill: str = "fewshot"  # how prompts reach prompt_tokens: "fewshot" turns, or masked "pad" tokens
    samples: int = 32  # prompts decoded per combination (after warm-up)
    task: str = "arith"
    device: str | None = None
    dtype: str | None = None
    seed: int = 0

    def __post_init__(self) -> None:
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")
        if not self.batch_sizes or min(self.batch_sizes) < 1:
            raise ValueError(f"batch sizes must be >= 1, got {self.batch_sizes}")
        for n in self.prompt_tokens:
            if n is not None and n < 1:
                raise ValueError(f"prompt tokens must be >= 1, got {n}")
        if not self.step_paths or any(p not in STEP_PATHS for p in self.step_paths):
            raise ValueError(f"step paths must be some of {', '.join(STEP_PATHS)}, got {self.step_paths}")
        if self.prompt_fill not in PROMPT_FILLS:
            raise ValueError(f"prompt_fill must be one of {', '.join(PROMPT_FILLS)}, got {self.prompt_fill!r}")


class ForwardTimer:
    """Times every forward the sampler makes by wrapping the adapter's logits methods."""

    def __init__(self, lm: DiffusionLM) -> None:
        self.lm, self.seconds, self.calls = lm, 0.0, 0
        self._sync = torch.cuda.synchronize if lm.device.type == "cuda" else (lambda: None)

    def _wrap(self, fn):
        def timed(*args, **kwargs):
            self._sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            self._sync()
            self.seconds += time.perf_counter() - t0
            self.calls += 1
            return out

        return timed

    @contextmanager
    def active(self) -> Iterator["ForwardTimer"]:
        lm = self.lm
        lm.logits, lm.logits_window, lm.logits_graphed = (
            self._wrap(lm.logits), self._wrap(lm.logits_window), self._wrap(lm.logits_graphed))
        try:
            yield self
        finally:
            del lm.logits, lm.logits_window, lm.logits_graphed  # back to the class methods


def build_prompts(task, tokenizer, docs, prompt_tokens: int | None, seed: int = 0, fill: str = "fewshot") -> list[str]:
    """Task prompts; with ``prompt_tokens`` and ``fill="fewshot"``, preceded by solved training
    problems (earlier chat turns) to the count closest to N tokens. (``fill="pad"`` pads at encoding.)"""
    if prompt_tokens is None or fill == "pad":
        return [task.build_prompt(d, tokenizer) for d in docs]
    shots = task.docs("train", limit=2000)
    rng = random.Random(seed)
    chat = bool(getattr(tokenizer, "chat_template", None))
    prompts = []
    for doc in docs:
        turns: list[dict[str, str]] = []
        pool = rng.sample(shots, len(shots))
        text = _render(tokenizer, turns, task.prompt_text(doc), chat)
        n = len(tokenizer(text, add_special_tokens=False).input_ids)
        for shot in pool:
            more = turns + [{"role": "user", "content": task.prompt_text(shot)}, {"role": "assistant", "content": shot.target}]
            longer = _render(tokenizer, more, task.prompt_text(doc), chat)
            m = len(tokenizer(longer, add_special_tokens=False).input_ids)
            if abs(m - prompt_tokens) >= abs(n - prompt_tokens):
                break
            turns, text, n = more, longer, m
        prompts.append(text)
    return prompts


def _render(tokenizer, turns: list[dict[str, str]], question: str, chat: bool) -> str:
    msgs = turns + [{"role": "user", "content": question}]
    if chat:
        return tokenizer.apply_chat_template(msgs, add_generation_prompt=True, tokenize=False)
    return "\n\n".join(m["content"] for m in msgs) + "\n"


def _reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    else:
        try:  # Linux: writing 5 resets the peak RSS (VmHWM) of this process
            Path("/proc/self/clear_refs").write_text("5")
        except OSError:
            pass


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


@dataclass
class _Combo:
    sampler: str
    cache: str
    step: str
    batch_size: int
    prompt_tokens: int | None
    smp: Any
    batches: list[tuple[list, dict[str, torch.Tensor]]]
    times: list[float] = field(default_factory=list)
    forward_s: float = 0.0
    forward_calls: int = 0
    nfe: int = 0
    answer_tokens: int = 0
    forward_tokens: int = 0
    peak_mb: float = 0.0
    warm_s: float = 0.0  # the untimed warm-up batch: what the estimate printed before the rounds is made of
    completions: dict[str, str] = field(default_factory=dict)
    extracted: dict[str, Any] = field(default_factory=dict)
    correct: int = 0


def run_bench(cfg: BenchConfig, lm: DiffusionLM | None = None, tokenizer=None, *, progress: bool = True,
              on_round: Callable[[dict[str, Any]], None] | None = None,
              on_estimate: Callable[[float], None] | None = None) -> dict[str, Any]:
    """Measure every combination; returns {"config", "environment", "rows", "complete", "rounds"}
    (rows: one dict per combination). ``on_round`` gets the result so far after every round but
    the last (``complete`` False, rows over the samples measured so far), so an interrupted bench
    keeps what it measured. ``on_estimate`` gets the expected seconds of the timed rounds once the
    warm-ups are done (each combination's warm-up batch time x its batches)."""
    from .models import load_model
    from .samplers import build_sampler
    from .tasks import get_task
    from .textutil import decode_answers

    if lm is None:
        lm, tokenizer = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    task = get_task(cfg.task)
    docs = task.docs("test", limit=cfg.samples)
    if len(docs) < cfg.samples:
        raise ValueError(f"task {cfg.task!r} has only {len(docs)} test documents, asked for samples={cfg.samples}")
    warm = task.docs("train", limit=max(cfg.batch_sizes))
    tokenizer.padding_side = "left"
    dev = lm.device

    def encode(prompts: list[str], n: int | None) -> dict[str, torch.Tensor]:
        pad_to = {"padding": "max_length", "max_length": n} if cfg.prompt_fill == "pad" and n else {"padding": True}
        enc = tokenizer(prompts, return_tensors="pt", add_special_tokens=False, **pad_to)
        return {"input_ids": enc.input_ids.to(dev), "attention_mask": enc.attention_mask.to(dev)}

    prompts = {n: build_prompts(task, tokenizer, docs, n, cfg.seed, cfg.prompt_fill) for n in cfg.prompt_tokens}
    combos: list[_Combo] = []
    for name, cache, step, bs, n in itertools.product(cfg.samplers, cfg.caches, cfg.step_paths, cfg.batch_sizes, cfg.prompt_tokens):
        smp = build_sampler(name, {**cfg.params, **cache_params(cache), "step_kernel": step == "kernel"}, task=task)
        batches = [(docs[i : i + bs], encode(prompts[n][i : i + bs], n)) for i in range(0, len(docs), bs)]
        combo = _Combo(name, cache, step, bs, n, smp, batches)
        # Warm-up (untimed): one batch of training problems at this shape.
        warm_enc = encode(build_prompts(task, tokenizer, warm[:bs], n, cfg.seed + 1, cfg.prompt_fill), n)
        t0 = time.perf_counter()
        smp.generate(lm, **warm_enc)
        _sync(dev)
        combo.warm_s = time.perf_counter() - t0
        combos.append(combo)
    if on_estimate is not None:
        on_estimate(sum(c.warm_s * len(c.batches) for c in combos))

    timer = ForwardTimer(lm)
    rounds = max(len(c.batches) for c in combos)
    bar = tqdm(total=sum(len(c.batches) for c in combos), desc="bench", disable=not progress)
    with timer.active():
        for r in range(rounds):
            for c in combos:
                if r >= len(c.batches):
                    continue
                batch_docs, enc = c.batches[r]
                _reset_peak(dev)
                f_s, f_n = timer.seconds, timer.calls
                _sync(dev)
                t0 = time.perf_counter()
                out = c.smp.generate(lm, **enc)
                _sync(dev)
                c.times.append(time.perf_counter() - t0)
                c.peak_mb = max(c.peak_mb, _peak_mb(dev))
                c.forward_s += timer.seconds - f_s
                c.forward_calls += timer.calls - f_n
                texts, counts = decode_answers(tokenizer, out.answers, lm.eos_token_ids)
                c.nfe += int(out.nfe.sum())
                c.answer_tokens += sum(counts)
                c.forward_tokens += int(out.forward_tokens.sum())
                for doc, text in zip(batch_docs, texts):
                    score = task.score(doc, text)
                    c.completions[doc.doc_id], c.extracted[doc.doc_id] = text, score.extracted
                    c.correct += bool(score.correct)
                bar.update(1)
            if on_round is not None and r + 1 < rounds:
                on_round(_result(cfg, lm, combos, r + 1, rounds))
    bar.close()
    return _result(cfg, lm, combos, rounds, rounds)


def _result(cfg: BenchConfig, lm: DiffusionLM, combos: list[_Combo], done: int, rounds: int) -> dict[str, Any]:
    measured = [c for c in combos if c.times]
    rows = [_summarize(c, len(c.completions)) for c in measured]
    _compare_with_none(rows, measured)
    return {"config": asdict(cfg), "environment": _environment(lm), "rows": rows, "complete": done == rounds,
            "rounds": [done, rounds]}


def _summarize(c: _Combo, n: int) -> dict[str, Any]:
    total = sum(c.times)
    lat = sorted(c.times)
    p95 = lat[min(len(lat) - 1, max(0, round(0.95 * len(lat)) - 1))]
    prompt_lens = [int(m.sum()) for _, e in c.batches for m in e["attention_mask"]]
    return {
        "sampler": c.sampler,
        "params": c.smp.params(),
        "cache": c.cache,
        "step": c.step,
        "batch_size": c.batch_size,
        "prompt_tokens": c.prompt_tokens,
        "prompt_tokens_mean": statistics.fmean(prompt_lens),  # real tokens
        "prompt_positions_mean": statistics.fmean(e["input_ids"].shape[1] for _, e in c.batches for _ in e["input_ids"]),
        "samples": n,
        "batches": len(c.times),
        "seconds_total": total,
        "latency_p50_s": statistics.median(lat),
        "latency_p95_s": p95,
        "seconds_per_sample": total / n,
        "throughput_tok_s": c.answer_tokens / total if total else 0.0,
        "nfe_mean": c.nfe / n,
        "answer_tokens_mean": c.answer_tokens / n,
        "tokens_per_forward": c.answer_tokens / max(c.nfe, 1),
        "forward_tokens_per_sample": c.forward_tokens / n,
        "forward_calls": c.forward_calls,
        "ms_per_forward": 1000 * c.forward_s / max(c.forward_calls, 1),
        "forward_seconds": c.forward_s,
        "sampler_overhead": 1.0 - c.forward_s / total if total else 0.0,
        # The same in absolute terms: what the loop adds to each model call, whatever the model costs.
        "overhead_us_per_forward": 1e6 * (total - c.forward_s) / max(c.forward_calls, 1),
        "peak_mem_mb": c.peak_mb,
        "accuracy": c.correct / n,
    }


def _compare_with_none(rows: list[dict[str, Any]], combos: list[_Combo]) -> None:
    """Agreement with (and wall-clock speedup over) cache=none at the same sampler, step path, batch size
    and prompt length."""
    key = lambda r: (r["sampler"], r["step"], r["batch_size"], r["prompt_tokens"])  # noqa: E731
    none = {key(r): (r, c) for r, c in zip(rows, combos) if r["cache"] == "none"}
    for r, c in zip(rows, combos):
        ref = none.get(key(r))
        if ref is None:
            r["agreement_with_none"] = r["answer_agreement_with_none"] = r["speedup_vs_none"] = None
            continue
        docs = [d for d in c.completions if d in ref[1].completions]  # all of them once the bench is complete
        n = max(len(docs), 1)
        r["agreement_with_none"] = sum(c.completions[d] == ref[1].completions[d] for d in docs) / n
        r["answer_agreement_with_none"] = sum(c.extracted[d] == ref[1].extracted[d] for d in docs) / n
        r["speedup_vs_none"] = ref[0]["seconds_total"] / r["seconds_total"]


def _environment(lm: DiffusionLM) -> dict[str, Any]:
    import platform

    env = {
        "model": lm.name, "device": str(lm.device), "dtype": str(lm.dtype).replace("torch.", ""),
        "torch": torch.__version__, "threads": torch.get_num_threads(), "cpus": os.cpu_count(),
        "platform": platform.platform(), "python": platform.python_version(),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    if lm.device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(lm.device)
    else:
        env["step_kernel"] = kernel_status()
    try:
        env["load_avg"] = os.getloadavg()
    except OSError:
        pass
    return env


# -- output -------------------------------------------------------------------------
def to_markdown(result: dict[str, Any]) -> str:
    """The results table (one row per combination) with the environment it was measured in."""
    env = result["environment"]
    done, rounds = result.get("rounds", (1, 1))
    partial = "" if result.get("complete", True) else f" (PARTIAL: {done} of {rounds} rounds measured)"
    lines = [
        f"model `{env['model']}` on {env.get('gpu', env['device'])} ({env['dtype']}, {env['threads']} threads), "
        f"torch {env['torch']}, {result['config']['samples']} samples per row{partial}, task `{result['config']['task']}`, "
        f"long prompts by {result['config']['prompt_fill']}, measured {env['time']}",
        "",
        "| " + " | ".join(h for _, h in COLUMNS) + " |",
        "|" + "---|" * len(COLUMNS),
    ]
    for r in result["rows"]:
        lines.append("| " + " | ".join(_fmt(k, r.get(k)) for k, _ in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def _fmt(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key in ("accuracy", "agreement_with_none", "answer_agreement_with_none", "sampler_overhead"):
        return f"{100 * v:.1f}%"
    if key == "speedup_vs_none":
        return f"{v:.2f}x"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return str(v)


def write_results(result: dict[str, Any], out_dir: str | Path, *, with_chart: bool = True) -> dict[str, Path]:
    """bench.json (everything), bench.md (table) and, ``with_chart``, bench.png (chart) in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "bench.json", "table": out / "bench.md"}
    write_atomic(paths["json"], json.dumps(result, indent=2, default=str) + "\n")
    write_atomic(paths["table"], to_markdown(result))
    if with_chart:
        from .report.bench_chart import bench_chart  # matplotlib only when a chart is drawn

        paths["chart"] = out / "bench.png"
        bench_chart(result).savefig(paths["chart"], dpi=120)
    return paths
