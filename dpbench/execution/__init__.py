"""Sanitize and run generated code: `sanitize` (code out of the answer) and `run_program` (sandboxed)."""

from .sandbox import STATUSES, ExecResult, SandboxConfig, isolation_mode, run_program, run_programs
from .sanitize import defines, extract_code, parse_prefix, sanitize

__all__ = [
    "STATUSES",
    "ExecResult",
    "SandboxConfig",
    "defines",
    "extract_code",
    "isolation_mode",
    "parse_prefix",
    "run_program",
    "run_programs",
    "sanitize",
]
