"""Morel Python worker.

Started by the Morel host as ``python3 runner.py`` with the app root as cwd.

Protocol (see the host side in ``morel-runtime-process``):

* fd 3 carries host -> worker frames, fd 4 worker -> host frames.  A frame is
  a 4-byte big-endian length followed by that many bytes of UTF-8 JSON.
* stdout / stderr belong to the application (its log); the protocol never
  touches them.
* The first frame is ``Load``; we import the user's files and answer with
  ``MetaData`` (or ``LoadError`` and exit 1).  Afterwards ``Invoke`` and
  ``Cancel`` frames arrive in any order; every ``Invoke`` gets exactly one
  ``InvokeResult`` unless it was cancelled.
* ``MetaData`` lists each function's ``params`` (as shown to people) and its
  ``signature``: each parameter's name, kind (``positional_only``,
  ``positional_or_keyword``, ``var_positional``, ``keyword_only``,
  ``var_keyword``, or ``request`` for one annotated ``morel.Request``) and
  whether it has a default.  The gateway checks arguments against it.
* An ``Invoke`` to a function with a ``request`` parameter carries
  ``request``: ``{"method", "path", "headers": [[name, value]...], "query":
  [[name, value]...]}``; the parameter gets the SDK's ``Request`` for it.  A
  function that returns the SDK's ``Response`` is answered with
  ``"result": <body>, "response": {"status", "headers": [[name, value]...],
  "raw"}`` (``raw``: the body is a string sent as text).
* EOF on fd 3 means "shut down": calls still running get ``EOF_GRACE_S`` to
  answer, then we exit 0 without waiting any longer.

Threading model (the same for every app):

* ``concurrency`` caller threads (from the Load frame) run plain functions;
  one of them at a time, the reader, reads fd 3.  One read often brings
  many frames; the reader parses them one by one and runs each sync call
  inline, on its own thread: a quick call costs no thread switch.  The
  answers of one read go out together, in one write, when no complete frame
  is left (a function that was recently slow has the earlier answers written
  before it runs).  The other callers sleep on a condition until they are
  given the reader role: no thread wakes for a call it does not run.
* A watchdog thread looks at the reader every WATCH_TICK_S.  When the reader
  is in a call it writes the reader's pending answers, and once the reader
  has been in the same call for SLOW_CALL_S (so 20 to 30 ms) it takes the
  reader role away and gives it to an idle caller, which goes on with the
  same input buffer (the stuck thread does not touch the buffer while it is
  in user code).  A caller back from a call checks under the state lock
  whether it is still the reader: if so it reads on, if the role is free it
  takes it, otherwise it goes to sleep.  So up to ``concurrency`` slow sync
  calls run at once, as before.  The watchdog sleeps after WATCH_IDLE_TICKS
  without a sync call running; the next call wakes it.
* ``async def`` functions run on an asyncio loop in a daemon thread.  The
  reader hands it the calls and ``Cancel`` frames of one read in one
  ``call_soon_threadsafe`` (sooner if a sync call comes first).  Async calls
  run concurrently with each other and with sync calls.
* When every caller is inside a call, no caller reads fd 3: new frames wait
  in the pipe until a caller is free, as they always did for plain
  functions.  Apps with async functions have one more thread, the spare
  reader, which reads only in that case, so that async calls and cancels are
  still served: it hands async calls to the loop and queues sync ones in a
  backlog for the next free caller, and it gives the role back once a
  caller is idle.  The spare never runs a sync call, so ``concurrency``
  still bounds the sync calls that run at once.

EOF on fd 3 is normally seen by the reader, which then gives the calls in
flight EOF_GRACE_S to answer and exits.  The main thread waits for POLLHUP on
fd 3 so that the worker still exits promptly when every caller is stuck in
user code.  Frames to fd 4 are written under a lock so each frame is
contiguous.
"""

import collections
import importlib
import importlib.util
import inspect
import json
import os
import re
import select
import signal
import struct
import sys
import threading
import time
import traceback

IN_FD = 3
OUT_FD = 4
MAX_FRAME = 64 * 1024 * 1024
# What one read of fd 3 asks for: a pipe holds 64 KiB, so more brings nothing,
# and a buffer past malloc's mmap threshold (128 KiB) costs an mmap, mremap
# and munmap on every read.
READ_CHUNK = 64 * 1024

_HEADER = struct.Struct(">I")
_pack_len = _HEADER.pack
_unpack_len = _HEADER.unpack_from


class _NotSerializable(Exception):
    pass


def _reject(obj):
    # Used as the JSON encoder's ``default`` hook: anything the encoder does
    # not know natively is an error, reported with the offending type.
    raise _NotSerializable(type(obj))


# One reusable encoder: ``json.dumps`` with keyword arguments would build a
# new encoder on every call.
_full_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_reject
).encode
# The C encoder behind it, built once (``JSONEncoder.encode`` builds one per
# call) and without the circular-reference check.  When it fails, _encode runs
# the full encoder, so that errors and their messages are json's own.
_c_encode = json.encoder.c_make_encoder and json.encoder.c_make_encoder(
    None, _reject, json.encoder.encode_basestring, None, ":", ",", False, False, False
)


def _encode(obj):
    if _c_encode:
        try:
            return "".join(_c_encode(obj, 0))
        except Exception:
            pass
    return _full_encode(obj)


_decode = json.loads
_scan = json.JSONDecoder().scan_once


def _decode_frame(raw):
    """A frame's JSON value: the scanner alone for a well-formed frame,
    ``json.loads`` (and its error) for anything else."""
    try:
        text = raw.decode("utf-8")
        value, end = _scan(text, 0)
        if end == len(text):
            return value
    except (ValueError, StopIteration):  # including UnicodeDecodeError
        pass
    return _decode(raw)


# Results of these exact types need no check for awaitables or generators.
_PLAIN = frozenset((int, float, str, bool, type(None), dict, list, tuple))


def _type_name(t):
    mod = getattr(t, "__module__", "builtins")
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", repr(t))
    return name if mod in ("builtins", None) else "%s.%s" % (mod, name)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

_write_lock = threading.Lock()


def _write_frame(payload: bytes):
    _write(_pack_len(len(payload)) + payload)


def _write(data):
    """Write whole frames (one or several) to fd 4."""
    with _write_lock:
        try:
            n = os.write(OUT_FD, data)
            if n < len(data):
                view = memoryview(data)[n:]
                while view:
                    n = os.write(OUT_FD, view)
                    view = view[n:]
            return
        except BrokenPipeError:
            pass
    # The host stopped reading: it is gone or shutting us down.
    _shutdown(0)


def _send(msg):
    _write_frame(_encode(msg).encode("utf-8"))


def _send_error(call_id, etype, message, tb=""):
    _write_frame(_error_payload(call_id, etype, message, tb))


def _error_payload(call_id, etype, message, tb=""):
    return _encode(
        {
            "type": "InvokeResult",
            "id": call_id,
            "ok": False,
            "error": {"message": message, "type": etype, "traceback": tb},
        }
    ).encode("utf-8")


_IMPORTLIB_INIT = os.path.join(os.path.dirname(importlib.__file__), "__init__.py")


def _is_internal(filename):
    return (
        filename == __file__
        or filename == _IMPORTLIB_INIT
        or filename.startswith("<frozen importlib")
    )


def _user_traceback(exc):
    """The formatted traceback without the runner's and importlib's frames."""
    te = traceback.TracebackException(type(exc), exc, exc.__traceback__)
    seen = set()
    todo = [te]
    while todo:
        t = todo.pop()
        if id(t) in seen:
            continue
        seen.add(id(t))
        t.stack[:] = [f for f in t.stack if not _is_internal(f.filename)]
        todo.extend(x for x in (t.__cause__, t.__context__) if x is not None)
    return "".join(te.format())


def _has_user_frames(exc):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        tb = exc.__traceback__
        while tb is not None:
            if not _is_internal(tb.tb_frame.f_code.co_filename):
                return True
            tb = tb.tb_next
        exc = exc.__cause__
    return False


def _send_exception(call_id, exc):
    _write_frame(_exception_payload(call_id, exc))


def _exception_payload(call_id, exc):
    return _error_payload(call_id, type(exc).__name__, str(exc), _user_traceback(exc))


def _send_result(call_id, result):
    _write_frame(_result_payload(call_id, result))


def _result_payload(call_id, result):
    """The reply to a call that returned ``result``; ``result`` is encoded once and spliced in."""
    response = None
    if type(result) not in _PLAIN and type(result) is _response_class():
        try:
            result, response = _response_parts(result)
        except (TypeError, ValueError) as e:
            return _error_payload(call_id, "InvalidResponse", "the function's response is not valid: %s" % e)
    if type(result) not in _PLAIN and (inspect.isgenerator(result) or inspect.isasyncgen(result)):
        return _error_payload(
            call_id,
            "SerializationError",
            "function returned a %s; streaming results are not supported, "
            "return a list instead" % _type_name(type(result)),
        )
    try:
        body = _encode(result)
    except _NotSerializable as e:
        return _error_payload(
            call_id,
            "SerializationError",
            "result is not JSON-serializable: object of type %s"
            % _type_name(e.args[0]),
        )
    except ValueError as e:  # NaN/Infinity, circular references
        return _error_payload(
            call_id, "SerializationError", "result is not JSON-serializable: %s" % e
        )
    except Exception as e:  # e.g. non-string dict keys of exotic types
        return _error_payload(
            call_id,
            "SerializationError",
            "result is not JSON-serializable: %s: %s" % (type(e).__name__, e),
        )
    if type(call_id) is int:
        head = '{"type":"InvokeResult","id":%d,"ok":true,"result":' % call_id
    else:
        head = '{"type":"InvokeResult","id":%s,"ok":true,"result":' % _encode(call_id)
    tail = "}" if response is None else ',"response":%s}' % _encode(response)
    payload = (head + body + tail).encode("utf-8")
    if len(payload) > MAX_FRAME:
        return _error_payload(
            call_id,
            "SerializationError",
            "result is too large: %d bytes encoded (limit %d)"
            % (len(payload), MAX_FRAME),
        )
    return payload


def _response_class():
    """The SDK's ``Response`` class, once the SDK is imported (None before)."""
    sdk = sys.modules.get("morel")
    return getattr(sdk, "Response", None) if sdk is not None else None


def _response_parts(resp):
    """(body, response) for ``InvokeResult``: the body to encode as the result, and
    ``{"status", "headers", "raw"}`` (see the SDK's ``Response``).  ``raw``: the body is a
    string sent as it is, because its content type is not JSON."""
    status = resp.status
    if type(status) is not int or not 200 <= status <= 599:
        raise ValueError("status %r is not an integer between 200 and 599" % (status,))
    headers = []
    content_type = None
    for name, value in resp.headers:
        if not isinstance(name, str) or not isinstance(value, str):
            raise TypeError("header names and values must be strings, got %r: %r" % (name, value))
        if name.lower() == "content-type":
            content_type = value
        headers.append([name, value])
    raw = False
    if content_type is not None and isinstance(resp.body, str):
        media = content_type.split(";", 1)[0].strip().lower()
        raw = not (media == "application/json" or media.endswith("+json"))
    return resp.body, {"status": status, "headers": headers, "raw": raw}


# ---------------------------------------------------------------------------
# Loading user code
# ---------------------------------------------------------------------------


def _module_name(rel):
    rel = rel.replace(os.sep, "/")
    if rel.endswith(".py"):
        rel = rel[:-3]
    parts = [p for p in rel.split("/") if p not in ("", ".")]
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _same_file(mod, path):
    f = getattr(mod, "__file__", None)
    if not f:
        return False
    try:
        return os.path.samefile(f, path)
    except OSError:
        return False


def _import_file(root, rel):
    path = os.path.join(root, rel)
    if not os.path.isfile(path):
        raise FileNotFoundError("no such file: %s" % path)
    name = _module_name(rel)
    importable = name and all(p.isidentifier() for p in name.split("."))
    if importable:
        existing = sys.modules.get(name)
        if existing is None or _same_file(existing, path):
            # A regular import: user files that import each other share the
            # very same module objects.
            mod = importlib.import_module(name)
            if _same_file(mod, path):
                return mod
    # The name is not importable (e.g. "my-app.py") or it is shadowed by an
    # already imported module (e.g. a user file called "json.py"): load it
    # from its path under a private name.
    safe = "".join(c if c.isalnum() else "_" for c in (name or rel))
    private = "_morel_app." + safe
    if private in sys.modules:
        return sys.modules[private]
    spec = importlib.util.spec_from_file_location(private, path)
    if spec is None or spec.loader is None:
        raise ImportError("cannot load %s" % path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[private] = mod
    try:
        spec.loader.exec_module(mod)
    except BaseException:
        sys.modules.pop(private, None)
        raise
    return mod


_instances = {}  # class object -> its single instance in this worker


def _resolve(mod, attr, rel):
    obj = mod
    parts = attr.split(".")
    for i, part in enumerate(parts):
        if i > 0 and inspect.isclass(obj):
            inst = _instances.get(obj)
            if inst is None:
                try:
                    inst = obj()
                except Exception as e:
                    raise RuntimeError(
                        "could not instantiate class %s (it must have a no-argument "
                        "constructor): %s: %s" % (obj.__qualname__, type(e).__name__, e)
                    ) from e
                _instances[obj] = inst
            obj = inst
        try:
            obj = getattr(obj, part)
        except AttributeError:
            where = ".".join(parts[:i]) or rel
            raise AttributeError(
                "%s has no attribute %r" % (where, part)
            ) from None
    if not callable(obj):
        raise TypeError("%s is not callable (got a value of type %s)" % (attr, _type_name(type(obj))))
    return obj


def _params(fn):
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return []
    out = []
    for p in sig.parameters.values():
        if p.kind is p.VAR_POSITIONAL:
            out.append("*" + p.name)
        elif p.kind is p.VAR_KEYWORD:
            out.append("**" + p.name)
        else:
            out.append(p.name)
    return out


_KINDS = {
    inspect.Parameter.POSITIONAL_ONLY: "positional_only",
    inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional_or_keyword",
    inspect.Parameter.VAR_POSITIONAL: "var_positional",
    inspect.Parameter.KEYWORD_ONLY: "keyword_only",
    inspect.Parameter.VAR_KEYWORD: "var_keyword",
}


def _is_request_annotation(annotation):
    """Whether a parameter is annotated ``morel.Request`` (the SDK's class, or the name of it
    under ``from __future__ import annotations``)."""
    if isinstance(annotation, str):
        return annotation in ("Request", "morel.Request")
    sdk = sys.modules.get("morel")
    return sdk is not None and annotation is getattr(sdk, "Request", None)


def _signature(fn):
    """The parameters in detail for ``MetaData`` (the gateway checks arguments against them),
    or None when Python cannot say (the gateway then passes arguments on unchecked).  A
    parameter annotated ``morel.Request`` is of kind ``request``: this runner fills it."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    out = []
    for p in sig.parameters.values():
        kind = _KINDS.get(p.kind)
        if kind is None:
            return None
        if kind in ("positional_or_keyword", "keyword_only") and _is_request_annotation(p.annotation):
            kind = "request"
        out.append({"name": p.name, "kind": kind, "default": p.default is not p.empty})
    return out


# Function name -> the parameter its calls get the request in (see _signature).
_request_params = {}


def _is_async(fn):
    if inspect.iscoroutinefunction(fn):
        return True
    call = getattr(fn, "__call__", None)
    return not inspect.isroutine(fn) and inspect.iscoroutinefunction(call)


def _load(msg):
    root = os.path.abspath(msg.get("root") or os.getcwd())
    # Python put this script's directory at sys.path[0]; user code must not
    # see the runner's directory, it must see the app root instead.
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]
    sys.path.insert(0, root)
    importlib.invalidate_caches()

    functions = msg.get("functions") or []
    by_file = {}
    for f in functions:
        by_file.setdefault(f.get("file", ""), []).append(f)

    modules = {}
    errors = []
    for rel, fns in by_file.items():
        try:
            modules[rel] = _import_file(root, rel)
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            names = ", ".join(repr(f.get("name")) for f in fns)
            errors.append(
                "failed to import %s (needed by function %s): %s: %s\n%s"
                % (rel, names, type(e).__name__, e, _user_traceback(e))
            )

    table = {}
    meta = []
    for f in functions:
        rel = f.get("file", "")
        mod = modules.get(rel)
        if mod is None:
            continue
        name = f.get("name")
        attr = f.get("attr") or name
        try:
            fn = _resolve(mod, attr, rel)
        except Exception as e:
            detail = _user_traceback(e) if _has_user_frames(e) else ""
            errors.append(
                "cannot load function %r from %s: %s%s"
                % (name, rel, e, "\n" + detail if detail else "")
            )
            continue
        is_async = _is_async(fn)
        table[name] = (fn, is_async)
        signature = _signature(fn)
        for p in signature or ():
            if p["kind"] == "request":
                _request_params[name] = p["name"]
                break
        meta.append(
            {"name": name, "params": _params(fn), "is_async": is_async, "signature": signature}
        )
    return table, meta, errors


# ---------------------------------------------------------------------------
# Calling
# ---------------------------------------------------------------------------


class _AsyncSide:
    """The event loop running async calls, in a daemon thread.

    Started at load time when the app has async functions, otherwise on first
    use (a plain function that returned an awaitable).  The readers hand it
    work with ``call_soon_threadsafe(_run_on_loop, batch)``.
    """

    def __init__(self):
        self.loop = None
        self.tasks = {}  # call id -> task
        self.cancel_requested = set()
        self._lock = threading.Lock()

    def get_loop(self):
        loop = self.loop
        if loop is None:
            with self._lock:
                if self.loop is None:
                    # Imported on first use: asyncio costs tens of milliseconds of every
                    # cold start, and an app with only plain functions never needs it.
                    import asyncio

                    loop = asyncio.new_event_loop()
                    t = threading.Thread(
                        target=self._run, args=(loop,), name="morel-asyncio", daemon=True
                    )
                    t.start()
                    self.loop = loop
                loop = self.loop
        return loop

    @staticmethod
    def _run(loop):
        import asyncio

        asyncio.set_event_loop(loop)
        loop.run_forever()

    # The methods below run on the loop thread.

    def start(self, call_id, fn, args, kwargs):
        try:
            coro = fn(*args, **kwargs)
        except BaseException as e:
            _send_exception(call_id, e)
            return
        self.start_coro(call_id, coro)

    def start_coro(self, call_id, coro):
        if not inspect.isawaitable(coro):
            _send_result(call_id, coro)
            return
        try:
            self.tasks[call_id] = self.loop.create_task(self._drive(call_id, coro))
        except BaseException as e:
            _send_exception(call_id, e)

    async def _drive(self, call_id, coro):
        import asyncio  # loaded by get_loop already

        try:
            result = await coro
        except asyncio.CancelledError:
            if call_id in self.cancel_requested:
                return  # cancelled by the host: no reply
            _send_error(call_id, "CancelledError", "the call was cancelled by the function itself")
            return
        except BaseException as e:
            # Including SystemExit/KeyboardInterrupt, which would otherwise
            # escape the task and stop the event loop for every other call.
            _send_exception(call_id, e)
            return
        finally:
            self.tasks.pop(call_id, None)
            self.cancel_requested.discard(call_id)
        _send_result(call_id, result)

    def cancel(self, call_id):
        task = self.tasks.get(call_id)
        if task is not None:
            self.cancel_requested.add(call_id)
            task.cancel()


_async = _AsyncSide()


def _run_on_loop(batch):
    """Runs on the loop thread: the async starts and cancels of one read, in order."""
    for fn, args in batch:
        fn(*args)


def _to_loop(batch):
    _async.get_loop().call_soon_threadsafe(_run_on_loop, batch)


def _call_sync(call_id, fn, args, kwargs):
    payload = _answer(call_id, fn, args, kwargs)
    if payload is not None:
        _write_frame(payload)


def _answer(call_id, fn, args, kwargs):
    """Run a sync call; its reply payload, or None when the loop will answer."""
    try:
        result = fn(*args, **kwargs)
    except BaseException as e:
        return _exception_payload(call_id, e)
    if type(result) not in _PLAIN and inspect.isawaitable(result):
        # A plain function that returned a coroutine (e.g. a wrapper
        # around an async function): finish it on the event loop.
        loop = _async.get_loop()
        loop.call_soon_threadsafe(_async.start_coro, call_id, result)
        return None
    return _result_payload(call_id, result)


def _shutdown(code):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Don't cut a frame in half if another thread is writing one right now.
    _write_lock.acquire(timeout=0.5)
    os._exit(code)


_FRAME_ID = re.compile(rb'"id":(\d+)')


def _refuse_frame(raw, exc):
    """Answers the call in an undecodable frame with an error; False when the
    frame names no call (the protocol itself is broken)."""
    m = _FRAME_ID.search(raw, 0, 200)
    if m is None or not raw.startswith(b'{"type":"Invoke"'):
        return False
    err = ValueError(
        "the call's arguments could not be decoded (%s)" % type(exc).__name__
    )
    try:
        _write_frame(_exception_payload(int(m.group(1)), err))
    except Exception:
        return False
    return True


def _fatal(message):
    try:
        sys.stderr.write("morel runner: %s\n" % message)
    except Exception:
        pass
    _shutdown(2)


class _Input:
    """Frames from fd 3.  Not thread-safe: one reader at a time."""

    def __init__(self):
        self.buf = bytearray()
        self.pos = 0
        self.frames = 0  # frames consumed so far (progress, for the EOF watcher)

    def parse(self):
        """The next complete frame already buffered, or None.  A call whose
        frame cannot be decoded (too deep, too big, not UTF-8 JSON) is answered
        with an error and skipped: the worker keeps serving."""
        while True:
            buf = self.buf
            avail = len(buf) - self.pos
            if avail < 4:
                return None
            (length,) = _unpack_len(buf, self.pos)
            if length > MAX_FRAME:
                _fatal("frame of %d bytes exceeds the %d byte limit" % (length, MAX_FRAME))
            if avail < 4 + length:
                return None
            start = self.pos + 4
            self.pos = start + length
            self.frames += 1
            raw = buf[start : self.pos]
            try:
                msg = _decode_frame(raw)
            except (ValueError, RecursionError, MemoryError) as e:
                if _refuse_frame(raw, e):
                    continue
                _fatal("malformed frame (not UTF-8 JSON): %s" % type(e).__name__)
            if type(msg) is not dict:
                _fatal("malformed frame: expected a JSON object, got %s" % type(msg).__name__)
            return msg

    def fill(self):
        """One (blocking) read from fd 3; False at EOF."""
        buf = self.buf
        # Drop consumed bytes only when we have to read anyway: this keeps
        # the cost linear when one read brings many frames.
        if self.pos:
            del buf[: self.pos]
            self.pos = 0
        need = 4
        if len(buf) >= 4:
            need = 4 + _unpack_len(buf, 0)[0] - len(buf)
        while True:
            try:
                chunk = os.read(IN_FD, max(READ_CHUNK, need))
                break
            except InterruptedError:
                continue
        if not chunk:
            if buf:
                sys.stderr.write(
                    "morel runner: EOF in the middle of a frame (%d bytes pending)\n" % len(buf)
                )
            return False
        buf += chunk
        return True

    def next(self):
        """The next frame (blocking), or None at EOF."""
        while True:
            msg = self.parse()
            if msg is not None:
                return msg
            if not self.fill():
                return None


# After EOF on fd 3, calls already running get this long to finish and reply
# before the worker exits; it is also how long the watcher lets readers go
# without consuming a frame before deciding they are stuck in user code.
EOF_GRACE_S = 0.5


def _drain_and_exit():
    """EOF: give calls in flight a short chance to reply, then exit 0."""
    deadline = time.monotonic() + EOF_GRACE_S
    while (_inflight() or _async.tasks) and time.monotonic() < deadline:
        time.sleep(0.005)
    _shutdown(0)


def _watch_for_eof(inp):
    """Exit soon after the host closes fd 3, whatever the other threads do.

    Normally a reader consumes the remaining frames, sees EOF and exits by
    itself.  This thread covers the case where every reader is stuck in user
    code: poll() with an empty event mask sleeps until POLLHUP (the write end
    was closed) without touching the data; from then on, if no frame is
    consumed for EOF_GRACE_S, the worker exits.
    """
    p = select.poll()
    p.register(IN_FD, 0)
    while not p.poll():
        pass
    seen = inp.frames
    while True:
        time.sleep(EOF_GRACE_S)
        if inp.frames == seen:
            _shutdown(0)
        seen = inp.frames


def _exit_if_host_dies_while(loading, inp):
    """Exit at once if the host closes fd 3 while ``loading`` is set and sent
    nothing after the Load frame.

    poll() with an empty event mask sleeps until POLLHUP without touching the
    data.  Frames the host sent before closing are still answered once the
    load is done, and after the load the normal EOF handling takes over (calls
    in flight get their grace period), so in those cases this does nothing.
    """
    p = select.poll()
    p.register(IN_FD, 0)
    while not p.poll():
        pass
    if not loading.is_set():
        return
    q = select.poll()
    q.register(IN_FD, select.POLLIN)
    unread = any(ev & select.POLLIN for _, ev in q.poll(0))
    if not unread and len(inp.buf) == inp.pos:
        os._exit(0)


def _decode_invoke(msg, table):
    """(call_id, fn, is_async, args, kwargs) or None after replying NotFound."""
    call_id = msg.get("id")
    entry = table.get(msg.get("name"))
    if entry is None:
        _send_error(call_id, "NotFound", "no such function: %r" % (msg.get("name"),))
        return None
    fn, is_async = entry
    kwargs = msg.get("kwargs") or {}
    request = msg.get("request")
    if request is not None:
        param = _request_params.get(msg.get("name"))
        if param is not None:
            kwargs = dict(kwargs)
            kwargs[param] = _make_request(request)
    return call_id, fn, is_async, msg.get("args") or (), kwargs


def _make_request(wire):
    """The SDK's ``Request`` for an ``Invoke`` frame's ``request`` (the dict itself when the
    SDK cannot be imported)."""
    sdk = sys.modules.get("morel")
    cls = getattr(sdk, "Request", None) if sdk is not None else None
    if cls is None:
        return wire
    return cls._from_wire(wire)


def _unknown_frame(msg):
    sys.stderr.write("morel runner: ignoring unknown frame type %r\n" % (msg.get("type"),))


# ---------------------------------------------------------------------------
# Serving: who reads fd 3 and who runs which call
# ---------------------------------------------------------------------------

# A sync call that has run this long on the reader's thread loses the reader
# role to an idle caller (see the module docstring).  The watchdog looks every
# WATCH_TICK_S, so the hand-over happens 20 to 30 ms into the call.
SLOW_CALL_S = 0.02
WATCH_TICK_S = 0.01
# After this many ticks without a sync call running on the reader, the
# watchdog sleeps until the next one starts: an idle worker does not wake
# up a hundred times a second.
WATCH_IDLE_TICKS = 50
# The reader writes the answers of one read together (see _lead).  A function
# that took longer than SLOW_FN_S in one of its last SLOW_FN_MEMORY calls has
# the answers before it written first, so they do not wait for it.
SLOW_FN_S = 0.001
SLOW_FN_MEMORY = 100
# Answers at least this large are written at once rather than joined.
OUT_JOIN_MAX = 64 * 1024


class _Caller:
    """One thread that runs sync calls (or the spare reader's token).

    ``call_no`` is odd while the thread is inside a sync call, even
    otherwise.  Only the thread itself changes it; the increment that ends a
    call run as the reader happens under ``_state_lock``, so that the
    watchdog, which reads it, never takes the role from a reader that has
    already left the call.
    """

    __slots__ = ("call_no",)

    def __init__(self):
        self.call_no = 0


# The reader role and the idle callers.  Everything here changes only under
# _state_lock; the watchdog glances at _reader without the lock and decides
# under it.
_state_lock = threading.Lock()
_role_free = threading.Condition(_state_lock)  # idle callers wait here
_spare_turn = threading.Condition(_state_lock)  # the spare reader waits here
_reader = None  # who reads fd 3: a caller, _spare, or None (every caller is in a call)
_idle = 0  # callers waiting on _role_free and not notified yet
_backlog = collections.deque()  # sync calls the spare read: (call_id, fn, args, kwargs)
_callers = []  # every caller thread's _Caller; fixed once serving starts
_spare = None  # the spare reader's _Caller, only in apps with async functions

# Answers the reader has not written yet: header and payload of each frame.
# The reader appends under _state_lock (right after its call) and writes them
# out while it is between calls; the watchdog writes them, under the lock,
# while the reader is inside a call.  Nobody else touches the list.
_out = []
# Function name -> calls left before it counts as fast again (SLOW_FN_S).
# Written by whoever ran the call; read by the reader.
_slow = {}
_clock = time.perf_counter

# Set by the watchdog before it sleeps, cleared by whoever wakes it.  The
# reader sets its call_no odd *before* it looks at _watch_asleep and the
# watchdog sets _watch_asleep *before* it looks at the reader's call_no, so
# at least one of them sees the other (the interpreter orders both).
_watch_asleep = False
_watch_wake = threading.Event()


def _inflight():
    """Sync calls read from fd 3 and not answered yet."""
    return sum(c.call_no & 1 for c in _callers) + len(_backlog)


def _offer_role():
    """Give the free reader role to an idle caller, else to the spare reader.

    Called under _state_lock with _reader None.  With neither, the role stays
    free and the first caller back from its call takes it.
    """
    global _idle, _reader
    if _idle:
        _idle -= 1
        _role_free.notify()
    elif _spare is not None:
        _reader = _spare
        _spare_turn.notify()


def _caller_main(me, inp, table):
    """Body of each caller thread: run backlog calls, read when given the role, else sleep."""
    global _idle, _reader
    while True:
        with _state_lock:
            if me.call_no & 1:  # back from a backlog call
                me.call_no += 1
            while True:
                if _backlog:
                    call = _backlog.popleft()
                    me.call_no += 1
                    if _reader is None:
                        # We may have been woken for the role: pass it on.
                        _offer_role()
                    break
                if _reader is None:
                    _reader = me
                    call = None
                    break
                _idle += 1
                _role_free.wait()
        if call is None:
            _lead(me, inp, table)
        else:
            _call_sync(*call)


def _flush_out():
    """Write the pending answers: by the reader, between calls."""
    data = b"".join(_out)
    _out.clear()
    _write(data)


def _lead(me, inp, table):
    """Read frames and run sync calls inline until the watchdog hands the role on.

    The answers of the calls of one read are written together, in one write,
    once no complete frame is left (or before a call that may be slow).
    """
    parse = inp.parse
    for_loop = []  # async starts and cancels not handed to the loop yet
    while True:
        msg = parse()
        if msg is None:
            if for_loop:
                _to_loop(for_loop)
                for_loop = []
            if _out:
                _flush_out()
            if not inp.fill():
                _drain_and_exit()
            continue
        kind = msg.get("type")
        if kind == "Invoke":
            call = _decode_invoke(msg, table)
            if call is None:
                continue
            call_id, fn, is_async, args, kwargs = call
            if is_async:
                for_loop.append((_async.start, (call_id, fn, args, kwargs)))
                continue
            if for_loop:  # don't hold async calls back behind a slow sync one
                _to_loop(for_loop)
                for_loop = []
            name = msg["name"]
            if _out and name in _slow:
                _flush_out()
            me.call_no += 1
            if _watch_asleep:
                _wake_watchdog()
            start = _clock()
            payload = _answer(call_id, fn, args, kwargs)
            if _clock() - start > SLOW_FN_S:
                _slow[name] = SLOW_FN_MEMORY
            elif _slow:
                left = _slow.get(name)
                if left is not None:
                    if left > 1:
                        _slow[name] = left - 1
                    else:
                        _slow.pop(name, None)
            with _state_lock:
                me.call_no += 1
                still_reader = _reader is me
                if still_reader and payload is not None and len(payload) < OUT_JOIN_MAX:
                    _out.append(_pack_len(len(payload)))
                    _out.append(payload)
                    continue
            if payload is not None:
                _write_frame(payload)
            if not still_reader:
                return
        elif kind == "Cancel":
            if _async.loop is not None:  # else no async call ever ran: nothing to cancel
                for_loop.append((_async.cancel, (msg.get("id"),)))
        else:
            _unknown_frame(msg)


def _spare_main(inp, table):
    """Body of the spare reader: reads only while every caller is in a call."""
    while True:
        with _state_lock:
            while _reader is not _spare:
                _spare_turn.wait()
        _read_for_busy_callers(inp, table)


def _read_for_busy_callers(inp, table):
    global _idle, _reader
    parse = inp.parse
    for_loop = []
    while True:
        msg = parse()
        if msg is None:
            if for_loop:
                _to_loop(for_loop)
                for_loop = []
            with _state_lock:
                if _idle:
                    _reader = None
                    _offer_role()
                    return
            if not inp.fill():
                _drain_and_exit()
            continue
        kind = msg.get("type")
        if kind == "Invoke":
            call = _decode_invoke(msg, table)
            if call is None:
                continue
            call_id, fn, is_async, args, kwargs = call
            if is_async:
                for_loop.append((_async.start, (call_id, fn, args, kwargs)))
                continue
            with _state_lock:
                _backlog.append((call_id, fn, args, kwargs))
                if _idle:
                    _idle -= 1
                    _role_free.notify()
        elif kind == "Cancel":
            for_loop.append((_async.cancel, (msg.get("id"),)))
        else:
            _unknown_frame(msg)


def _wake_watchdog():
    global _watch_asleep
    _watch_asleep = False
    _watch_wake.set()


def _watchdog():
    """Hands the reader role on when the reader has been in one call for SLOW_CALL_S."""
    global _watch_asleep
    slow_ticks = max(1, round(SLOW_CALL_S / WATCH_TICK_S))
    seen, seen_no, ticks, quiet = None, 0, 0, 0
    while True:
        time.sleep(WATCH_TICK_S)
        r = _reader
        n = r.call_no if r is not None else 0
        if n & 1:
            quiet = 0
            if r is seen and n == seen_no:
                ticks += 1
            else:
                seen, seen_no, ticks = r, n, 0
            if _out or ticks >= slow_ticks:
                data = _while_in_call(r, n, ticks >= slow_ticks)
                if data:
                    _write(data)
                if ticks >= slow_ticks:
                    seen = None
            continue
        seen = None
        quiet += 1
        if quiet >= WATCH_IDLE_TICKS:
            quiet = 0
            _watch_wake.clear()
            _watch_asleep = True
            r = _reader
            if r is None or not r.call_no & 1:
                _watch_wake.wait()
            _watch_asleep = False


def _while_in_call(r, n, demote):
    """If ``r`` is still the reader and in call number ``n``: take its pending
    answers (returned, to be written outside the lock) and, if ``demote``,
    the reader role.
    """
    global _reader
    with _state_lock:
        if _reader is not r or r.call_no != n:
            return None
        data = b"".join(_out)
        _out.clear()
        if demote:
            _reader = None
            _offer_role()
    return data


def _serve(inp, table, concurrency):
    """Start the caller threads, the spare reader and the watchdog."""
    global _spare
    has_async = any(is_async for _, is_async in table.values())
    if has_async:
        _async.get_loop()
        _spare = _Caller()
        _start(lambda: _spare_main(inp, table), "morel-spare-reader")
    _callers[:] = [_Caller() for _ in range(concurrency)]
    _start(_watchdog, "morel-watchdog")
    for i, c in enumerate(_callers):
        _start(lambda c=c: _caller_main(c, inp, table), "morel-call-%d" % i)


def _start(body, name):
    threading.Thread(target=_guard, args=(body,), name=name, daemon=True).start()


def _register_with_sdk(table):
    """Tells the SDK which functions run in this worker, so morel.call() of them stays local."""
    sdk = sys.modules.get("morel")
    if sdk is None:
        try:
            import morel as sdk
        except Exception:
            return
    local = getattr(sdk, "_local", None)
    if isinstance(local, dict):
        local.update({name: fn for name, (fn, _) in table.items()})


def main():
    # stdout/stderr are the app's log: make prints show up promptly.
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except Exception:
            pass
    # The host stops workers with signals or by closing fd 3; SIGINT should
    # not turn into a KeyboardInterrupt inside some user call.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    try:
        os.fstat(IN_FD)
        os.fstat(OUT_FD)
        # Child processes started by user code must not inherit the protocol
        # pipes (a grandchild holding fd 4 would hide the worker's exit).
        os.set_inheritable(IN_FD, False)
        os.set_inheritable(OUT_FD, False)
    except OSError:
        sys.stderr.write("morel runner: fd 3 and fd 4 must be the protocol pipes\n")
        sys.exit(2)

    inp = _Input()
    first = inp.next()
    if first is None:
        _shutdown(0)
    if first.get("type") != "Load":
        _fatal("expected a Load frame first, got %r" % (first,))

    # Loading runs user code that may take long (imports, model loading). If the host dies
    # meanwhile, nobody will ever call this worker: exit at once instead of finishing the load.
    loading = threading.Event()
    loading.set()
    threading.Thread(
        target=_exit_if_host_dies_while, args=(loading, inp), name="morel-load-watch", daemon=True
    ).start()
    try:
        table, meta, errors = _load(first)
    except BaseException as e:
        table, meta, errors = {}, [], ["loader crashed: %s" % _user_traceback(e)]
    if errors:
        _send({"type": "LoadError", "error": "\n".join(errors)})
        _shutdown(1)

    try:
        concurrency = max(1, int(first.get("concurrency") or 1))
    except (TypeError, ValueError):
        concurrency = 1
    _register_with_sdk(table)
    loading.clear()
    _send({"type": "MetaData", "functions": meta})
    _serve(inp, table, concurrency)
    _guard(lambda: _watch_for_eof(inp))


def _guard(body):
    try:
        body()
    except BaseException:
        # A bug in the runner itself: the worker is unusable, say so and go.
        sys.stderr.write("morel runner: internal error\n" + traceback.format_exc())
        _shutdown(3)
    _shutdown(0)


if __name__ == "__main__":
    main()
