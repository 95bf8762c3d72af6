"""`DPBenchLM`: a dpbench sampler driving a diffusion LM, as an lm-evaluation-harness model.

Registered as ``dpbench``. Model args: ``model`` or ``pretrained`` (lm-eval's usual key; preset, directory or hub id),
``sampler`` (``dpbench samplers``), any sampler parameter (``threshold=0.5``,
``gen_length=256``, ``steps=...``), ``batch_size``, ``device``, ``dtype``,
``chat`` (auto/true/false), ``trust_remote_code``, ``seed``, ``warmup``,
``records_path`` (append every record to this JSONL file, flushed and fsynced
per batch), ``resume`` (true: requests whose record is already in
``records_path`` are not decoded again; see `DPBenchLM.generate_until`). With
lm-eval's command line give the batch size as ``--batch_size N`` (it passes
its own).

Only generation is supported: masked diffusion samplers produce text, they do
not score continuations, so `loglikelihood` raises `NotImplementedError`.

``--gen_kwargs`` (and a task's ``generation_kwargs``) are honoured per request:
``until`` cuts the answer; ``max_gen_toks`` sets ``gen_length`` to that many tokens
rounded up to a whole block (the sampler decodes whole blocks; a baseline keeps its
steps per block); ``do_sample=True`` with ``temperature`` T samples at T (T defaults to
1.0), ``do_sample=False`` decodes greedily. Anything else (``top_p``, ``top_k``,
``num_beams``, ...) and contradictions (``temperature>0`` with ``do_sample=False``, a
model-args temperature the task's ``do_sample=False`` would silently drop) are refused
with a ValueError before anything is decoded.

Every request leaves a record in ``self.records`` (task, doc_id, prompt and
answer tokens, NFE, seconds, the completion after ``until``), with the
runner's timing rule: one warm-up batch untimed; a batch's wall-clock is split
over its samples in proportion to their NFE. Under ``accelerate launch`` each
process takes the requests lm-eval gives its rank; `gather_object` brings
objects to rank 0.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import lm_eval.models  # noqa: F401  (fills lm-eval's lazy registry first; see register below)
import torch
from lm_eval.api.model import LM
from lm_eval.api.registry import register_model

from .. import records as rio
from ..params import parse_bool as _as_bool
from .genkwargs import GEN_KWARGS, sampler_overrides, stops_of


def apply_until(text: str, until: Any) -> str:
    """Cut ``text`` at the first stop string (lm-eval's ``until``: a string or a list)."""
    stops = [until] if isinstance(until, str) else list(until or [])
    cut = len(text)
    for s in stops:
        i = text.find(s) if s else -1
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


# `python -m dpbench.lmeval` keeps the instance lm-eval creates (lm-eval drops its own reference
# before returning), so it can add the model's figures to the results lm-eval saves.
_TRACK = {"on": False, "latest": None}


def latest_instance():
    """The `DPBenchLM` created last while tracking is on (see `dpbench.lmeval.__main__`), else None."""
    return _TRACK["latest"]


@register_model("dpbench")
class DPBenchLM(LM):
    """lm-eval model backed by a `DiffusionLM` and a dpbench sampler."""

    def __init__(
        self,
        model: str = "tiny-arith",
        sampler: Any = "dparallel",  # a name (with params below) or a sampler object
        batch_size: int | str = 1,
        device: str | None = None,
        dtype: str | None = None,
        chat: str | bool = "auto",
        trust_remote_code: bool | str = False,
        seed: int = 0,
        warmup: bool | str = True,
        records_path: str | None = None,  # also append each record to this JSONL file (rank suffix if > 1 process)
        resume: bool | str = False,  # reuse the records already in records_path for identical requests
        max_batch_size: int | None = None,  # passed by lm-eval; unused (no automatic batch size)
        lm: Any = None,  # an already loaded DiffusionLM (then ``tokenizer`` too); ``model`` is ignored
        tokenizer: Any = None,
        pretrained: str | None = None,  # lm-eval's usual name for ``model``
        **sampler_params: Any,
    ) -> None:
        super().__init__()
        model = self._check_args(model, pretrained, sampler, batch_size, chat, records_path, lm, tokenizer,
                                 sampler_params)
        self.batch_size = int(batch_size)
        self._init_distributed(device)
        if lm is None:
            from ..models import load_model

            lm, tokenizer = load_model(model, device=self._device, dtype=dtype,
                                       trust_remote_code=_as_bool(trust_remote_code, "trust_remote_code"))
            self.model_name = model
        else:
            self.model_name = getattr(lm, "name", "") or model
        self.lm, self.tokenizer = lm, tokenizer
        self._device = lm.device
        if self.tokenizer.pad_token_id is None:  # left padding needs an id; the attention mask hides it
            self.tokenizer.pad_token = self.tokenizer.eos_token
        chat_mode = "auto" if str(chat).lower() == "auto" else _as_bool(chat, "chat")
        has_template = bool(getattr(tokenizer, "chat_template", None))
        if chat_mode is True and not has_template:
            raise ValueError(f"chat=true but the tokenizer of {self.model_name!r} has no chat template")
        # The tokenizer decides: a chat template is used when it has one (never the model path).
        self.use_chat = has_template if chat_mode == "auto" else chat_mode
        self._templated_by_lmeval = False
        self.seed = int(seed)
        self.warmup = _as_bool(warmup, "warmup")
        self._warm = False
        self.records: list[dict[str, Any]] = []
        self.records_path = records_path
        if records_path and self.world_size > 1:
            self.records_path = f"{records_path}.rank{self.rank}"
        if records_path:
            Path(records_path).parent.mkdir(parents=True, exist_ok=True)
        self.resume = _as_bool(resume, "resume")
        if self.resume and not records_path:
            raise ValueError("resume=true needs records_path (the file whose records are reused)")
        self.reused = 0  # requests answered from records_path instead of decoded (all generate_until calls)
        self._samplers: dict[tuple, Any] = {}
        if _TRACK["on"]:
            _TRACK["latest"] = self

    def _check_args(self, model, pretrained, sampler, batch_size, chat, records_path, lm, tokenizer, params) -> str:
        """Every argument checked before the model is loaded; all problems in one PreflightError.
        Sets ``self.sampler``; returns the model name."""
        from ..preflight import Problems, check_model, check_sampler

        p = Problems()
        if pretrained is not None:
            if model not in (None, "tiny-arith", pretrained):
                p.add(f"model={model!r} and pretrained={pretrained!r} name different models; give one of them")
            model = pretrained
        if str(batch_size).startswith("auto"):
            p.add("batch_size=auto is not supported by dpbench; give an integer, e.g. batch_size=8")
        else:
            try:
                if int(batch_size) < 1:
                    p.add(f"batch_size must be >= 1, got {batch_size}")
            except ValueError:
                p.add(f"batch_size must be an integer, got {batch_size!r}")
        if isinstance(sampler, str):
            self.sampler = check_sampler(p, sampler, params)
        elif params:
            p.add(f"sampler params {sorted(params)} given with a sampler object; set them on it")
        else:
            self.sampler = sampler  # a sampler object, e.g. from dpbench.samplers.build_sampler
        if str(chat).lower() != "auto":
            p.check("chat", _as_bool, chat, "chat")
        if lm is None:
            p.check(f"model {model}", check_model, model)
        elif tokenizer is None:
            p.add("pass tokenizer= together with lm=")
        if records_path and Path(records_path).is_dir():
            p.add(f"records_path {records_path} is a directory; give a file path, e.g. {Path(records_path) / 'records.jsonl'}")
        p.raise_if_any("dpbench (lm-eval model)")
        return model

    def sampler_for(self, gen_kwargs: dict[str, Any] | None):
        """The sampler for a request's generation kwargs (built once per distinct setting)."""
        over = sampler_overrides(gen_kwargs, self.sampler.params())
        key = tuple(sorted(over.items()))
        if key not in self._samplers:
            from ..samplers import build_sampler

            self._samplers[key] = self.sampler if not over else build_sampler(
                self.sampler.name, {**self.sampler.params(), **over})
        return self._samplers[key]

    # -- distributed (accelerate launch / torchrun) ---------------------------------
    def _init_distributed(self, device: str | None) -> None:
        import os
        import warnings

        if device and str(device).startswith("cuda") and not torch.cuda.is_available():
            # lm-eval's command line passes cuda:0 when --device is not given.
            warnings.warn(f"device {device!r} requested but CUDA is not available; using the best available device")
            device = None
        self._device = torch.device(device) if device else None
        if int(os.environ.get("WORLD_SIZE", "1")) > 1:
            from accelerate import PartialState

            on_cpu = not torch.cuda.is_available() or str(device).startswith("cpu")
            state = PartialState(cpu=on_cpu)  # initialises torch.distributed (nccl on GPU, gloo on CPU)
            self._rank, self._world_size = state.process_index, state.num_processes
            self._device = state.device if device is None or str(device).startswith("cuda") else torch.device(device)

    @property
    def device(self) -> torch.device:
        return self._device

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.world_size == 1:
            return tensor
        import torch.distributed as dist

        tensor = tensor if tensor.dim() else tensor[None]  # lm-eval gathers 0-dim counts
        parts = [torch.zeros_like(tensor) for _ in range(self.world_size)]
        dist.all_gather(parts, tensor)
        return torch.cat(parts)

    def gather_object(self, obj: Any, dst: int = 0) -> list[Any] | None:
        if self.world_size == 1:
            return [obj]
        import torch.distributed as dist

        out = [None] * self.world_size if self.rank == dst else None
        dist.gather_object(obj, out, dst=dst)
        return out

    def barrier(self) -> None:
        if self.world_size > 1:
            import torch.distributed as dist

            dist.barrier()

    # -- chat templates ----------------------------------------------------------------
    @property
    def tokenizer_name(self) -> str:
        return str(getattr(self.tokenizer, "name_or_path", "")).replace("/", "__")

    def chat_template(self, chat_template: bool | str = False) -> str | None:
        return getattr(self.tokenizer, "chat_template", None) or ""

    def apply_chat_template(self, chat_history: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        """Used by lm-eval's ``--apply_chat_template``; then prompts arrive templated already."""
        self._templated_by_lmeval = True
        return self.tokenizer.apply_chat_template(chat_history, tokenize=False,
                                                  add_generation_prompt=add_generation_prompt)

    def prompt(self, context: str) -> str:
        """The string fed to the tokenizer: ``context`` as one user message when chat is on."""
        if self.use_chat and not self._templated_by_lmeval:
            return self.tokenizer.apply_chat_template([{"role": "user", "content": context}], tokenize=False,
                                                      add_generation_prompt=True)
        return context

    # -- requests ------------------------------------------------------------------------
    def loglikelihood(self, requests) -> list[tuple[float, bool]]:
        raise NotImplementedError(
            "dpbench's lm-eval model only generates (generate_until): masked diffusion samplers do not score "
            "continuations. Use generation tasks (dpbench_gsm8k, dpbench_minerva_math, ...)."
        )

    def loglikelihood_rolling(self, requests) -> list[float]:
        raise NotImplementedError(
            "dpbench's lm-eval model only generates (generate_until); perplexity tasks are not supported."
        )

    def _encode(self, prompts: list[str]) -> dict[str, torch.Tensor]:
        """How this bridge encodes a batch (a chat template already writes its special tokens)."""
        return rio.encode_prompts(self.tokenizer, prompts, add_special_tokens=not self.use_chat)

    def generate_until(self, requests, disable_tqdm: bool = False) -> list[str]:
        """Decode ``requests`` in batches; return each one's completion cut at its ``until``.

        Each batch's records are appended to ``records_path`` (flush + fsync) as
        soon as the batch is done, each with ``request``: a hash of the request
        (task, doc_id, the prompt as fed, ``req.args``) and of `describe` (model,
        sampler and params, batch size, chat, seed). With ``resume`` a request
        whose task, doc_id and hash match a stored record is not decoded: its
        stored completion is returned and its stored record (the original
        decode's NFE, seconds, ...) joins ``self.records``. A changed prompt,
        generation argument or configuration never matches, so it is decoded.
        """
        from tqdm.auto import tqdm

        gen_kwargs = [(req.args[1] if len(req.args) > 1 else None) or {} for req in requests]
        problems = {}
        for kw in gen_kwargs:  # every request's kwargs checked before anything is decoded
            try:
                self.sampler_for(kw)
            except ValueError as err:
                problems.setdefault(str(err), None)
        if problems:
            raise ValueError("; ".join(problems))
        prompts = [self.prompt(req.args[0]) for req in requests]
        out: list[str | None] = [None] * len(requests)
        keys = [self.request_key(req, p) for req, p in zip(requests, prompts)]
        stored = self._stored() if self.resume else {}
        reused = 0
        for i, req in enumerate(requests):
            found = stored.get((req.task_name, req.doc_id, keys[i]))
            if found:  # a list: lm-eval's repeats send the same request more than once
                rec = found.pop(0)
                out[i] = rec["completion"]
                self.records.append(rec)
                self.cache_hook.add_partial("generate_until", req.args, rec["completion"])
                reused += 1
        self.reused += reused
        todo = [i for i in range(len(requests)) if out[i] is None]
        lengths = {}
        if todo:
            ids = self.tokenizer([prompts[i] for i in todo], add_special_tokens=not self.use_chat)["input_ids"]
            lengths = {i: len(x) for i, x in zip(todo, ids)}
        # One sampler per batch (requests of different generation kwargs never share one); longest first:
        # less padding per batch; each sample's tokens do not depend on its batch.
        smp = {i: self.sampler_for(gen_kwargs[i]) for i in todo}
        groups: dict[int, list[int]] = {}
        for i in sorted(todo, key=lambda i: -lengths[i]):
            groups.setdefault(id(smp[i]), []).append(i)
        batches = [g[j : j + self.batch_size] for g in groups.values() for j in range(0, len(g), self.batch_size)]
        if self.warmup and not self._warm and batches:
            first = batches[0]
            self._run([prompts[i] for i in first], requests[first[0]], smp[first[0]])  # untimed, unrecorded
            self._warm = True
        bar = tqdm(total=len(requests), initial=reused, desc=f"dpbench/{self.sampler.name}",
                   disable=disable_tqdm or self.rank != 0)
        if reused:
            bar.set_postfix(reused=reused)
        for batch in batches:
            stops = [stops_of(gen_kwargs[i].get("until")) for i in batch]
            rows = self._run([prompts[i] for i in batch], requests[batch[0]], smp[batch[0]], stops)
            done = []
            for i, row in zip(batch, rows):
                req = requests[i]
                text = apply_until(row.pop("completion"), gen_kwargs[i].get("until"))
                out[i] = text
                rec = {"task": req.task_name, "doc_id": req.doc_id, "rank": self.rank, **row, "completion": text}
                if smp[i] is not self.sampler:  # what the request's gen_kwargs changed
                    rec["sampler_params"] = {k: v for k, v in smp[i].params().items() if self.sampler.params().get(k) != v}
                self.records.append(rec)
                done.append({**rec, "request": keys[i]})
                self.cache_hook.add_partial("generate_until", req.args, text)
            self._save(done)  # on disk before the next batch: a crash loses at most the batch in flight
            bar.update(len(batch))
        bar.close()
        return out  # type: ignore[return-value]

    def request_key(self, req, prompt: str) -> str:
        """The hash that must match for a stored record to answer ``req`` (see `generate_until`)."""
        blob = json.dumps({"task": req.task_name, "doc_id": req.doc_id, "prompt": prompt, "args": list(req.args),
                           "config": self.describe()}, sort_keys=True, ensure_ascii=False, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def _stored(self) -> dict[tuple[Any, Any, str], list[dict[str, Any]]]:
        """Records of ``records_path`` by (task, doc_id, request hash); a truncated last line is cut off."""
        stored: dict[tuple[Any, Any, str], list[dict[str, Any]]] = {}
        if not self.records_path:
            return stored
        for r in rio.read_records(self.records_path, repair=True):  # repair: later appends start on a clean line
            key = r.pop("request", None)
            if key is not None:
                stored.setdefault((r.get("task"), r.get("doc_id"), key), []).append(r)
        return stored

    def _save(self, recs: list[dict[str, Any]]) -> None:
        if self.records_path and recs:
            with open(self.records_path, "a", encoding="utf-8") as fh:
                rio.append_records(fh, recs)

    def _run(self, prompts: list[str], first, sampler=None, stops=None) -> list[dict[str, Any]]:
        """Decode one batch (`dpbench.records.decode_batch`: the runner's timing and records), sampling
        with a generator seeded by the batch's first request, as the runner seeds by its first document."""
        first_id = first.doc_id if isinstance(first.doc_id, int) else 0
        gen = rio.batch_generator(self.lm.device, self.seed, first_id)
        return rio.decode_batch(self.lm, self.tokenizer, sampler or self.sampler, prompts, generator=gen,
                                add_special_tokens=not self.use_chat, stop=stops or [()] * len(prompts))

    def describe(self) -> dict[str, Any]:
        return {"model": self.model_name, "sampler": self.sampler.name, "params": self.sampler.params(),
                "batch_size": self.batch_size, "chat": self.use_chat, "seed": self.seed}


__all__ = ["DPBenchLM", "GEN_KWARGS", "latest_instance", "apply_until", "sampler_overrides"]
