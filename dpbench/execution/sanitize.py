"""Turn a model's answer into a runnable program: code out of fences, the target function kept.

Instruct models answer code tasks with prose around a fenced block, often add
example calls, prints or ``if __name__ == "__main__":`` demos, and get cut off
mid-line at ``gen_length``. The paper's evaluation post-processes completions
before running the tests; `sanitize` does the same job with Python's own `ast`:

1. take the first fenced block (````python`` preferred), or the text itself;
2. if it does not define the entry point, treat it as a continuation of the
   prompt (base-model style: the body of the prompt's function); either way keep
   every definition the prompt makes (HumanEval prompts define helpers such as
   ``encode_shift`` or ``poly`` that the tests call);
3. drop trailing lines until the code parses (a cut-off last statement);
4. keep imports plus the functions, classes and simple assignments the entry
   point reaches by name; drop everything else at top level (demo calls,
   prints, asserts, ``__main__`` blocks), which could hang or fail the tests.
"""

from __future__ import annotations

import ast
import re

_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_PY_LANGS = ("python", "py", "python3", "")


def extract_code(text: str) -> str:
    """The code of the first fenced block (a ``python`` one if any), else ``text`` unchanged.

    An unclosed fence (generation cut off) runs to the end of the text.
    """
    blocks = [(m.group(1).lower(), m.group(2)) for m in _FENCE.finditer(text)]
    if not blocks:
        return text
    for lang, body in blocks:
        if lang in _PY_LANGS:
            return body
    return blocks[0][1]


def defines(code: str, name: str) -> bool:
    """Whether ``code`` has a top-level-looking ``def name(`` line."""
    return re.search(rf"^[ \t]*(?:async[ \t]+)?def[ \t]+{re.escape(name)}[ \t]*\(", code, re.MULTILINE) is not None


def parse_prefix(code: str) -> tuple[ast.Module | None, str]:
    """Parse ``code``; on a syntax error drop lines from the end until it parses.

    Returns (tree, the code that parsed), or (None, code) if no prefix parses.
    """
    lines = code.split("\n")
    for end in range(len(lines), 0, -1):
        src = "\n".join(lines[:end])
        try:
            return ast.parse(src), src
        except (SyntaxError, ValueError):  # ValueError: null bytes
            continue
    return None, code


def _names_used(node: ast.AST) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}


def _defined_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)]
    if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
        return [node.target.id]
    return []


def _segment(lines: list[str], node: ast.stmt) -> str:
    start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
    return "\n".join(lines[start - 1 : node.end_lineno])


def _prompt_statements(prompt: str, entry_point: str | None) -> list[str]:
    """Every top-level statement of the prompt except the entry point's stub (helpers, imports, constants)."""
    ptree, psrc = parse_prefix(prompt)
    if ptree is None:
        return []
    plines = psrc.split("\n")
    return [_segment(plines, n) for n in ptree.body if entry_point not in _defined_names(n)]


def sanitize(text: str, entry_point: str | None = None, prompt: str | None = None) -> str:
    """Runnable code for ``entry_point`` from a raw completion (see the module docstring).

    ``prompt`` is the code prompt (HumanEval's signature and docstring, and the
    helpers, imports and constants it defines, which the tests may call): a
    completion that does not define ``entry_point`` continues it; either way
    every definition of the prompt is kept. Code that never parses is returned
    as extracted, so the test run reports the syntax error.
    """
    code = extract_code(text)
    continued = prompt is not None and bool(entry_point) and not defines(code, entry_point)
    if continued:
        code = prompt + code
    tree, code = parse_prefix(code)
    if tree is None:
        return code
    lines = code.split("\n")
    prompt_end = prompt.count("\n") + 1 if continued else 0  # statements starting here are the prompt's own

    defs: dict[str, list[int]] = {}
    for i, node in enumerate(tree.body):
        for name in _defined_names(node):
            defs.setdefault(name, []).append(i)
    keep = {i for i, node in enumerate(tree.body) if node.lineno < prompt_end}
    if entry_point and entry_point in defs:
        todo = [entry_point] + [n for i in keep for n in _names_used(tree.body[i])]
        seen: set[str] = set()
        while todo:
            name = todo.pop()
            if name in seen or name not in defs:
                continue
            seen.add(name)
            for i in defs[name]:
                keep.add(i)
                todo.extend(_names_used(tree.body[i]))
    else:  # no known target: keep every definition
        keep |= {i for idx in defs.values() for i in idx}

    body = [_segment(lines, node) for i, node in enumerate(tree.body)
            if isinstance(node, (ast.Import, ast.ImportFrom)) or i in keep]
    header = _prompt_statements(prompt, entry_point) if prompt is not None and not continued else []
    seen_hdr = set(body)
    out = [h for h in header if h not in seen_hdr] + body
    return "\n".join(out) + "\n"


def free_names(*sources: str) -> list[str]:
    """Names the code loads but never binds (builtins excluded): what a test takes from the program.

    Over-approximates what is bound (a local anywhere binds the name everywhere),
    which only makes a name the test needs missing, never an extra one reachable.
    """
    import builtins

    loaded, bound = set(), set()
    for src in sources:
        tree = ast.parse(src)
        for n in ast.walk(tree):
            if isinstance(n, ast.Name):
                (loaded if isinstance(n.ctx, ast.Load) else bound).add(n.id)
            elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                bound.add(n.name)
            elif isinstance(n, ast.arg):
                bound.add(n.arg)
            elif isinstance(n, ast.alias):
                bound.add((n.asname or n.name).split(".")[0])
            elif isinstance(n, ast.ExceptHandler) and n.name:
                bound.add(n.name)
            elif isinstance(n, (ast.MatchAs, ast.MatchStar)) and n.name:
                bound.add(n.name)
    return sorted(loaded - bound - set(dir(builtins)))


__all__ = ["defines", "extract_code", "free_names", "parse_prefix", "sanitize"]
