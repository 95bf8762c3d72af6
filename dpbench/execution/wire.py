"""Plain data across the sandbox boundary: a tagged-JSON codec and length-prefixed frames.

Both sides of a split-mode run use this module: the sandboxed worker (untrusted)
to send its function's results, the judge (trusted) to send arguments and to read
results. Only *decoding* is a security boundary, so `decode` is strict: it builds
exact builtin types (None, bool, int, float, complex, str, bytes, bytearray, and
list / tuple / dict / set / frozenset of them) and nothing else. It never calls
``eval``, never unpickles, never looks up a class by name, and bounds the depth
and the size of what it reads; anything else is `WireError`. Decoded values
compare with Python's own ``==``, so an object whose ``__eq__`` always says
"equal" cannot reach the test.

JSON carries None, bools, strings, lists, small ints and finite floats as they
are; everything else is a one-key object: ``{"tuple": [...]}``, ``{"set": [...]}``,
``{"frozenset": [...]}``, ``{"dict": [[k, v], ...]}`` (any plain hashable key),
``{"bytes": "<hex>"}``, ``{"bytearray": "<hex>"}``, ``{"int": "<hex>"}`` (beyond
2**53, so no decimal-digit limit applies), ``{"float": "nan"|"inf"|"-inf"}``,
``{"complex": [re, im]}``.

This file imports only the standard library: the worker runs it before any
generated code, in an interpreter that has nothing of dpbench.
"""

from __future__ import annotations

import json
import math

MAX_DEPTH = 200  # nesting levels a value may have
FRAME_HEADER = 4  # bytes: big-endian payload length
_BIG = 2**53


class WireError(ValueError):
    """The bytes or the value are not plain data in this format."""


class NotPlain(TypeError):
    """`encode` met a value that is not plain data (the message names its type)."""


# -- encoding (either side) -----------------------------------------------------------------
def encode(x, depth: int = 0, _active: frozenset = frozenset()):
    """``x`` as JSON-ready tagged data; raise `NotPlain` for anything that is not plain data.

    Subclasses of the plain types (``collections.Counter``, named tuples, numpy's
    float64, a ``str`` subclass with its own ``__eq__``) are sent as their base
    type's *contents*, read with the base type's own methods: what arrives is the
    value, never the subclass's behaviour.
    """
    if depth > MAX_DEPTH:
        raise NotPlain(f"nested deeper than {MAX_DEPTH} levels")
    if x is None or x is True or x is False:
        return x
    if isinstance(x, int):
        v = int.__index__(x)
        return v if -_BIG < v < _BIG else {"int": format(v, "x")}
    if isinstance(x, float):
        v = float.__float__(x)
        return v if math.isfinite(v) else {"float": repr(v)}
    if isinstance(x, str):
        return str.__str__(x)
    if isinstance(x, complex):
        v = complex.__complex__(x) if hasattr(complex, "__complex__") else complex(x.real, x.imag)
        return {"complex": [encode(v.real), encode(v.imag)]}
    if isinstance(x, (bytes, bytearray)):
        raw = bytes.hex(bytes(memoryview(x)))
        return {"bytearray" if isinstance(x, bytearray) else "bytes": raw}
    if id(x) in _active:
        raise NotPlain("a container that contains itself")
    active = _active | {id(x)}
    if isinstance(x, list):
        return [encode(v, depth + 1, active) for v in list.__iter__(x)]
    if isinstance(x, tuple):
        return {"tuple": [encode(v, depth + 1, active) for v in tuple.__iter__(x)]}
    if isinstance(x, dict):
        return {"dict": [[encode(k, depth + 1, active), encode(v, depth + 1, active)] for k, v in dict.items(x)]}
    if isinstance(x, (set, frozenset)):
        items = [encode(v, depth + 1, active) for v in (set.__iter__(x) if isinstance(x, set) else frozenset.__iter__(x))]
        return {"frozenset" if isinstance(x, frozenset) else "set": items}
    item = getattr(type(x), "item", None)
    if type(x).__module__ == "numpy" and callable(item) and getattr(x, "shape", None) == ():
        return encode(x.item(), depth)  # a numpy scalar: its Python value (compares the same)
    raise NotPlain(f"{type(x).__module__}.{type(x).__qualname__}")


def dumps(msg) -> bytes:
    """A message (JSON-ready) as one frame."""
    body = json.dumps(msg, ensure_ascii=True, allow_nan=False, separators=(",", ":")).encode("ascii")
    return len(body).to_bytes(FRAME_HEADER, "big") + body


# -- decoding (the trusted side) --------------------------------------------------------------
def _no_constant(name: str):
    raise WireError(f"JSON constant {name} is not allowed")


def loads(body: bytes):
    """One frame's payload -> JSON data (no tags resolved yet). Refuses NaN/Infinity literals."""
    try:
        return json.loads(body.decode("ascii"), parse_constant=_no_constant)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as err:
        raise WireError(f"not a JSON message ({type(err).__name__})") from None


def decode(x, depth: int = 0):
    """Tagged JSON data -> exact builtin values; `WireError` for anything else."""
    if depth > MAX_DEPTH:
        raise WireError(f"value nested deeper than {MAX_DEPTH} levels")
    t = type(x)
    if x is None or t is bool or t is str or t is float:
        return x
    if t is int:
        return x
    if t is list:
        return [decode(v, depth + 1) for v in x]
    if t is not dict or len(x) != 1:
        raise WireError(f"not a plain-data value: a JSON {t.__name__}")
    ((tag, v),) = x.items()
    try:
        if tag == "tuple" and type(v) is list:
            return tuple(decode(e, depth + 1) for e in v)
        if tag in ("set", "frozenset") and type(v) is list:
            items = [decode(e, depth + 1) for e in v]
            return set(items) if tag == "set" else frozenset(items)
        if tag == "dict" and type(v) is list:
            out = {}
            for pair in v:
                if type(pair) is not list or len(pair) != 2:
                    raise WireError("a dict entry is not a [key, value] pair")
                out[decode(pair[0], depth + 1)] = decode(pair[1], depth + 1)
            return out
        if tag in ("bytes", "bytearray") and type(v) is str:
            raw = bytes.fromhex(v)
            return raw if tag == "bytes" else bytearray(raw)
        if tag == "int" and type(v) is str and 0 < len(v) <= 1_000_000:
            return int(v, 16)
        if tag == "float" and v in ("nan", "inf", "-inf"):
            return float(v)
        if tag == "complex" and type(v) is list and len(v) == 2:
            re, im = decode(v[0], depth + 1), decode(v[1], depth + 1)
            if type(re) is float and type(im) is float:
                return complex(re, im)
    except TypeError as err:  # an unhashable set element or dict key
        raise WireError(f"bad {tag}: {err}") from None
    except ValueError as err:
        if isinstance(err, WireError):
            raise
        raise WireError(f"bad {tag}: {err}") from None
    raise WireError(f"unknown or malformed tag {tag!r}")


class FrameReader:
    """Accumulates bytes and yields complete frames; refuses a frame larger than ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.buf = bytearray()

    def feed(self, data: bytes) -> None:
        self.buf += data

    def next(self) -> bytes | None:
        if len(self.buf) < FRAME_HEADER:
            return None
        n = int.from_bytes(self.buf[:FRAME_HEADER], "big")
        if n > self.max_bytes:
            raise WireError(f"a message of {n} bytes is larger than the {self.max_bytes}-byte limit")
        if len(self.buf) < FRAME_HEADER + n:
            return None
        body = bytes(self.buf[FRAME_HEADER : FRAME_HEADER + n])
        del self.buf[: FRAME_HEADER + n]
        return body


__all__ = ["FrameReader", "MAX_DEPTH", "NotPlain", "WireError", "decode", "dumps", "encode", "loads"]
