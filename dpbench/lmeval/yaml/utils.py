"""Hooks for dpbench's lm-eval tasks: prompts and scorers are dpbench's, so both paths agree."""

from dpbench.tasks import gsm8k, math


def gsm8k_doc_to_text(doc: dict) -> str:
    return gsm8k.prompt_text(doc["question"])


def gsm8k_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"exact_match": float(gsm8k.score_text(results[0], doc["answer"])["correct"])}


def math_doc_to_text(doc: dict) -> str:
    return math.doc_to_text(doc["problem"])


def math_fewshot_samples() -> list[dict]:
    return [dict(e) for e in math.fewshot_examples()]


def math_process_results(doc: dict, results: list[str]) -> dict[str, float]:
    return {"exact_match": float(math.score_text(results[0], doc["solution"])["correct"])}
