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
* EOF on fd 3 means "shut down now": we exit 0 without waiting for calls that
  are still running.

Threading model (chosen per app at Load time, for the lowest latency):

* Only plain functions: ``concurrency`` threads of a ThreadPoolExecutor take
  turns reading fd 3 (leader/follower).  The reader that gets a call passes
  the reader role on and runs the call itself, so there is no hand-off
  between threads on the hot path.
* Some ``async def`` functions: the main thread runs an asyncio loop that
  reads fd 3 itself; async calls become tasks right away, plain functions
  are submitted to the ThreadPoolExecutor.

EOF on fd 3 is normally seen by whichever thread is reading; in both modes
one more thread (the main thread or a daemon) waits for POLLHUP on fd 3 so
the worker still exits promptly when every reader is stuck in user code.
Frames to fd 4 are written under a lock so each frame is contiguous.
"""

import asyncio
import concurrent.futures
import importlib
import importlib.util
import inspect
import json
import os
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
READ_CHUNK = 1 << 20

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
_encode = json.JSONEncoder(
    ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_reject
).encode
_decode = json.loads


def _type_name(t):
    mod = getattr(t, "__module__", "builtins")
    name = getattr(t, "__qualname__", None) or getattr(t, "__name__", repr(t))
    return name if mod in ("builtins", None) else "%s.%s" % (mod, name)


# ---------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------

_write_lock = threading.Lock()


def _write_frame(payload: bytes):
    data = _pack_len(len(payload)) + payload
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
    _send(
        {
            "type": "InvokeResult",
            "id": call_id,
            "ok": False,
            "error": {"message": message, "type": etype, "traceback": tb},
        }
    )


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
    _send_error(call_id, type(exc).__name__, str(exc), _user_traceback(exc))


def _send_result(call_id, result):
    """Encode ``result`` once, splice it into the reply, and write it."""
    if inspect.isgenerator(result) or inspect.isasyncgen(result):
        _send_error(
            call_id,
            "SerializationError",
            "function returned a %s; streaming results are not supported, "
            "return a list instead" % _type_name(type(result)),
        )
        return
    try:
        body = _encode(result)
    except _NotSerializable as e:
        _send_error(
            call_id,
            "SerializationError",
            "result is not JSON-serializable: object of type %s"
            % _type_name(e.args[0]),
        )
        return
    except ValueError as e:  # NaN/Infinity, circular references
        _send_error(
            call_id, "SerializationError", "result is not JSON-serializable: %s" % e
        )
        return
    except Exception as e:  # e.g. non-string dict keys of exotic types
        _send_error(
            call_id,
            "SerializationError",
            "result is not JSON-serializable: %s: %s" % (type(e).__name__, e),
        )
        return
    if type(call_id) is int:
        head = '{"type":"InvokeResult","id":%d,"ok":true,"result":' % call_id
    else:
        head = '{"type":"InvokeResult","id":%s,"ok":true,"result":' % _encode(call_id)
    payload = (head + body + "}").encode("utf-8")
    if len(payload) > MAX_FRAME:
        _send_error(
            call_id,
            "SerializationError",
            "result is too large: %d bytes encoded (limit %d)"
            % (len(payload), MAX_FRAME),
        )
        return
    _write_frame(payload)


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
        meta.append({"name": name, "params": _params(fn), "is_async": is_async})
    return table, meta, errors


# ---------------------------------------------------------------------------
# Calling
# ---------------------------------------------------------------------------


class _AsyncSide:
    """The event loop running async calls.

    When the app has async functions this is the main thread's loop (see
    ``_serve_with_loop``); otherwise a loop in a daemon thread is started on
    first use (a plain function that returned an awaitable).
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


_inflight = 0  # sync calls read from fd 3 and not answered yet
_inflight_lock = threading.Lock()


def _inflight_add():
    """Count a sync call as soon as it is read; _call_sync uncounts it."""
    global _inflight
    with _inflight_lock:
        _inflight += 1


def _call_sync(call_id, fn, args, kwargs):
    global _inflight
    try:
        try:
            result = fn(*args, **kwargs)
        except BaseException as e:
            _send_exception(call_id, e)
            return
        if inspect.isawaitable(result):
            # A plain function that returned a coroutine (e.g. a wrapper
            # around an async function): finish it on the event loop.
            loop = _async.get_loop()
            loop.call_soon_threadsafe(_async.start_coro, call_id, result)
            return
        _send_result(call_id, result)
    finally:
        with _inflight_lock:
            _inflight -= 1


def _shutdown(code):
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    # Don't cut a frame in half if another thread is writing one right now.
    _write_lock.acquire(timeout=0.5)
    os._exit(code)


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
        """The next complete frame already buffered, or None."""
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
        try:
            msg = _decode(buf[start : self.pos])
        except ValueError as e:
            _fatal("malformed frame (not UTF-8 JSON): %s" % e)
        if type(msg) is not dict:
            _fatal("malformed frame: expected a JSON object, got %s" % type(msg).__name__)
        return msg

    def fill(self):
        """One read from fd 3; False at EOF.  May raise BlockingIOError."""
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
    while (_inflight or _async.tasks) and time.monotonic() < deadline:
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


def _decode_invoke(msg, table):
    """(call_id, fn, is_async, args, kwargs) or None after replying NotFound."""
    call_id = msg.get("id")
    entry = table.get(msg.get("name"))
    if entry is None:
        _send_error(call_id, "NotFound", "no such function: %r" % (msg.get("name"),))
        return None
    fn, is_async = entry
    return call_id, fn, is_async, msg.get("args") or (), msg.get("kwargs") or {}


def _unknown_frame(msg):
    sys.stderr.write("morel runner: ignoring unknown frame type %r\n" % (msg.get("type"),))


def _serve_sync(inp, table, reader_lock):
    """Body of every pool thread when the app has no async functions.

    Leader/follower: the pool threads take turns being the reader.  The
    thread holding ``reader_lock`` reads frames until it gets a call, hands
    the reader role to the next idle thread and runs the call itself, so a
    call needs no hand-off between threads.
    """
    while True:
        with reader_lock:
            while True:
                msg = inp.next()
                if msg is None:
                    _drain_and_exit()
                kind = msg.get("type")
                if kind == "Invoke":
                    call = _decode_invoke(msg, table)
                    if call is not None:
                        if not call[2]:
                            _inflight_add()
                        break
                elif kind != "Cancel":  # sync calls cannot be cancelled
                    _unknown_frame(msg)
        call_id, fn, is_async, args, kwargs = call
        if is_async:  # not expected in this mode, but harmless
            _async.get_loop().call_soon_threadsafe(_async.start, call_id, fn, args, kwargs)
        else:
            _call_sync(call_id, fn, args, kwargs)


def _serve_with_loop(inp, table, pool):
    """Main-thread event loop reading fd 3, for apps with async functions.

    Async calls start right in the read callback (no thread hop); sync calls
    go to the pool.
    """
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    _async.loop = loop
    submit = pool.submit
    start = _async.start

    def handle(msg):
        kind = msg.get("type")
        if kind == "Invoke":
            call = _decode_invoke(msg, table)
            if call is None:
                return
            call_id, fn, is_async, args, kwargs = call
            if is_async:
                start(call_id, fn, args, kwargs)
            else:
                _inflight_add()
                submit(_call_sync, call_id, fn, args, kwargs)
        elif kind == "Cancel":
            _async.cancel(msg.get("id"))
        else:
            _unknown_frame(msg)

    def on_readable():
        try:
            if not inp.fill():
                # Let running tasks finish on this loop while another thread
                # waits for them (bounded) and exits.
                loop.remove_reader(IN_FD)
                threading.Thread(target=_drain_and_exit, daemon=True).start()
                return
        except BlockingIOError:
            return
        while True:
            msg = inp.parse()
            if msg is None:
                return
            handle(msg)

    # Frames that arrived together with the Load frame.
    while True:
        msg = inp.parse()
        if msg is None:
            break
        handle(msg)
    os.set_blocking(IN_FD, False)
    loop.add_reader(IN_FD, on_readable)
    loop.run_forever()



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
    pool = concurrent.futures.ThreadPoolExecutor(
        max_workers=concurrency, thread_name_prefix="morel-call"
    )
    _register_with_sdk(table)
    _send({"type": "MetaData", "functions": meta})

    if any(is_async for _, is_async in table.values()):
        threading.Thread(
            target=_guard, args=(lambda: _watch_for_eof(inp),), name="morel-eof", daemon=True
        ).start()
        _guard(lambda: _serve_with_loop(inp, table, pool))
    else:
        reader_lock = threading.Lock()
        for _ in range(concurrency):
            pool.submit(_guard, lambda: _serve_sync(inp, table, reader_lock))
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
