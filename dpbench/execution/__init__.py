"""Sanitize and run generated code: `sanitize` (code out of the answer), `run_split` / `run_program` (sandboxed)."""

from .sandbox import (
    ISOLATION_MODES,
    STATUSES,
    ExecResult,
    SandboxConfig,
    SandboxError,
    SplitJob,
    describe,
    isolation_mode,
    isolation_warning,
    run_program,
    run_programs,
    run_split,
)
from .sanitize import defines, extract_code, free_names, parse_prefix, sanitize

__all__ = [
    "ISOLATION_MODES",
    "STATUSES",
    "ExecResult",
    "SandboxConfig",
    "SandboxError",
    "SplitJob",
    "defines",
    "describe",
    "extract_code",
    "free_names",
    "isolation_mode",
    "isolation_warning",
    "parse_prefix",
    "run_program",
    "run_programs",
    "run_split",
    "sanitize",
]
