# The sandboxed worker's boot code: appended to wire.py's source and run as ``python -I -c``.
# It is part of the untrusted process: the generated program can read, patch or replace all of
# it, so nothing here decides a verdict in split mode. fd 3: messages from the judge; fd 4: to it.
#
# Protocol (frames of wire.py): -> ready; <- job {mode, source, guard}; program mode: -> done
# {status, reason}; split mode: -> loaded (or done on a load error), then per request:
# <- resolve {names} -> resolved {kinds};  <- call {name, args, kwargs, sync}
# -> return {value, post} | raised {type, message, base} | notplain {what}.
import builtins as _bi
import os as _os
import sys as _sys
import traceback as _tb
import types as _types

_RD, _WR = 3, 4
_read, _write, _getpid, _exit = _os.read, _os.write, _os.getpid, _os._exit
_ME = _getpid()
_frames = FrameReader(1 << 31)  # noqa: F821  (wire.py is prepended)


def _send(msg):
    if _getpid() != _ME:  # a forked copy does not speak for the program
        return
    data = dumps(msg)  # noqa: F821
    while data:
        data = data[_write(_WR, data):]


def _recv():
    while True:
        body = _frames.next()
        if body is not None:
            return loads(body)  # noqa: F821
        chunk = _read(_RD, 1 << 16)
        if not chunk:
            _exit(0)
        _frames.feed(chunk)


def _describe(e):
    try:
        return type(e).__name__, str(e)[:1000]
    except BaseException:
        return "Exception", "<unprintable>"


def _kind(ns, name):
    if name not in ns:
        return ["missing"]
    v = ns[name]
    if isinstance(v, type):
        return ["class"]
    if isinstance(v, _types.ModuleType):
        return ["module", str(getattr(v, "__name__", ""))]
    if callable(v):
        return ["function"]
    try:
        return ["value", encode(v)]  # noqa: F821
    except NotPlain:  # noqa: F821
        return ["other"]


def _serve(ns):
    while True:
        req = _recv()
        op = req.get("op")
        if op == "resolve":
            _send({"op": "resolved", "kinds": {n: _kind(ns, n) for n in req["names"]}})
            continue
        args, kwargs = decode(req["args"]), decode(req["kwargs"])  # noqa: F821
        try:
            result = ns[req["name"]](*args, **kwargs)
        except BaseException as e:
            t, m = _describe(e)
            _send({"op": "raised", "type": t, "message": m, "base": not isinstance(e, Exception)})
            continue
        try:
            post = {str(i): encode(args[i]) for i in req.get("sync", [])}  # noqa: F821
            post.update({k: encode(kwargs[k]) for k in req.get("sync_kw", [])})  # noqa: F821
            _send({"op": "return", "value": encode(result), "post": post})  # noqa: F821
        except NotPlain as e:  # noqa: F821
            _send({"op": "notplain", "what": str(e)})
        try:
            _sys.stdout.flush()
        except BaseException:
            pass


def _main():
    _send({"op": "ready"})
    job = _recv()
    # Started with -S (no site-packages .pth files run); the environment's packages stay importable.
    _sys.path.extend(p for p in job.get("sys_path", ()) if p not in _sys.path)
    if job.get("guard"):
        g = {}
        exec(job["guard"], g)
        g["reliability_guard"]()
    try:
        code = compile(job["source"], "program.py", "exec")
    except BaseException as e:
        _send({"op": "done", "status": "failed", "reason": "%s: %s" % _describe(e)})
        _exit(1)
    ns = {"__name__": "__main__", "__builtins__": _bi}
    try:
        exec(code, ns)
        _sys.stdout.flush()
    except SystemExit as e:
        _send({"op": "done", "status": "failed", "reason": f"SystemExit({e.code!r}) before the tests finished"})
        _exit(1)
    except BaseException as e:
        _tb.print_exc(limit=5)
        _send({"op": "done", "status": "failed", "reason": "%s: %s" % _describe(e)})
        _exit(1)
    if job["mode"] == "program":
        _send({"op": "done", "status": "passed"})
        _exit(0)
    _send({"op": "loaded"})
    _serve(ns)


_main()
