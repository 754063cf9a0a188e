"""Behavioural tests for the Morel worker runners (runner.py and runner.js).

Each test spawns a real worker the way the host does: fd 3 is the host ->
worker pipe, fd 4 the worker -> host pipe, stdout/stderr are captured.

Run with:
    python3 -m unittest discover -s crates/morel-runtime-process/runners/tests
"""

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
RUNNERS = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")
PY_APP = os.path.join(FIXTURES, "py_app")
PY_BROKEN = os.path.join(FIXTURES, "py_broken")
NODE_APP = os.path.join(FIXTURES, "node_app")
NODE_BROKEN = os.path.join(FIXTURES, "node_broken")
NODE = shutil.which("node")
REPO = os.path.abspath(os.path.join(RUNNERS, "..", "..", ".."))
SDK_DIR = os.path.join(REPO, "sdk", "python")
DISCOVER_PY = os.path.join(REPO, "crates", "morel-manifest", "scripts", "discover.py")
DISCOVER_JS = os.path.join(REPO, "crates", "morel-manifest", "scripts", "discover.js")


def _child_setup(host_to_worker_r, worker_to_host_w):
    def setup():
        # Move both ends out of the way first so dup2 onto 3/4 cannot clobber
        # one of them.
        import fcntl

        a = fcntl.fcntl(host_to_worker_r, fcntl.F_DUPFD, 10)
        b = fcntl.fcntl(worker_to_host_w, fcntl.F_DUPFD, 10)
        os.dup2(a, 3)
        os.dup2(b, 4)
        os.close(a)
        os.close(b)

    return setup


class Worker:
    """A runner process plus the host's ends of its two pipes."""

    def __init__(self, lang, root):
        if lang == "python":
            cmd = [sys.executable, os.path.join(RUNNERS, "runner.py")]
        else:
            cmd = [NODE, os.path.join(RUNNERS, "runner.js")]
        in_r, self.in_w = os.pipe()  # host -> worker
        self.out_r, out_w = os.pipe()  # worker -> host
        self.log = tempfile.TemporaryFile()
        self.err = tempfile.TemporaryFile()
        env = dict(
            os.environ,
            MOREL_APP="test",
            MOREL_RESOURCE="default",
            MOREL_ENV="test",
            PYTHONPATH=SDK_DIR,
            PYTHONDONTWRITEBYTECODE="1",  # keep the fixture dirs clean
        )
        self.proc = subprocess.Popen(
            cmd,
            cwd=root,
            stdin=subprocess.DEVNULL,
            stdout=self.log,
            stderr=self.err,
            env=env,
            preexec_fn=_child_setup(in_r, out_w),
            pass_fds=(3, 4),
        )
        os.close(in_r)
        os.close(out_w)
        self.buf = b""
        self.root = root

    # -- framing ----------------------------------------------------------

    def send(self, msg):
        data = json.dumps(msg).encode()
        os.write(self.in_w, struct.pack(">I", len(data)) + data)

    def send_raw(self, data):
        os.write(self.in_w, data)

    def _fill(self, deadline):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("no frame from worker; stderr:\n" + self.stderr())
        ready, _, _ = select.select([self.out_r], [], [], remaining)
        if not ready:
            raise TimeoutError("no frame from worker; stderr:\n" + self.stderr())
        chunk = os.read(self.out_r, 1 << 16)
        if not chunk:
            raise EOFError("worker closed fd 4; stderr:\n" + self.stderr())
        self.buf += chunk

    def recv(self, timeout=10.0):
        deadline = time.monotonic() + timeout
        while len(self.buf) < 4:
            self._fill(deadline)
        (length,) = struct.unpack(">I", self.buf[:4])
        while len(self.buf) < 4 + length:
            self._fill(deadline)
        body, self.buf = self.buf[4 : 4 + length], self.buf[4 + length :]
        return json.loads(body.decode("utf-8"))

    def read_eof(self, timeout=10.0):
        """True when fd 4 is closed with no further frames."""
        deadline = time.monotonic() + timeout
        while True:
            ready, _, _ = select.select([self.out_r], [], [], max(0, deadline - time.monotonic()))
            if not ready:
                return False
            chunk = os.read(self.out_r, 1 << 16)
            if not chunk:
                return not self.buf
            self.buf += chunk

    # -- protocol helpers -------------------------------------------------

    def load(self, functions, concurrency=8):
        self.send(
            {
                "type": "Load",
                "app": "test",
                "resource": "default",
                "root": self.root,
                "concurrency": concurrency,
                "functions": functions,
            }
        )
        return self.recv()

    def invoke(self, call_id, name, args=(), kwargs=None, timeout_ms=30000, request=None):
        msg = {
            "type": "Invoke",
            "id": call_id,
            "name": name,
            "args": list(args),
            "kwargs": kwargs or {},
            "timeout_ms": timeout_ms,
        }
        if request is not None:
            msg["request"] = request
        self.send(msg)

    def call(self, name, /, *args, **kwargs):
        self.invoke(999, name, args, kwargs)
        msg = self.recv()
        assert msg["type"] == "InvokeResult" and msg["id"] == 999, msg
        return msg

    def close_input(self):
        if self.in_w is not None:
            os.close(self.in_w)
            self.in_w = None

    def wait(self, timeout=10.0):
        return self.proc.wait(timeout=timeout)

    def stdout(self):
        self.log.seek(0)
        return self.log.read().decode("utf-8", "replace")

    def stderr(self):
        self.err.seek(0)
        return self.err.read().decode("utf-8", "replace")

    def stop(self):
        self.close_input()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self.out_r)
        self.log.close()
        self.err.close()


def fn(name, file, attr=None):
    return {"name": name, "file": file, "attr": attr or name}


PY_FUNCS = [
    fn(n, "hello.py")
    for n in (
        "greet add fail bad_result nan pair nothing slow aslow agreet afail forever "
        "chatty varargs numbers hang unicode_echo child_fds aexit block_loop self_cancel"
    ).split()
] + [
    fn("Counter.incr", "models.py"),
    fn("Counter.aget", "models.py"),
    fn("Counter.peek", "models.py"),
    fn("times_nine", "pkg/mod.py"),
    fn("shadowed", "json.py"),
    fn("Model.predict", "sdk_app.py"),
    fn("ping", "sdk_app.py"),
    fn("get_item", "sdk_app.py"),
    fn("create_item", "sdk_app.py"),
    fn("page", "sdk_app.py"),
    fn("bad_response", "sdk_app.py"),
]

NODE_FUNCS = [
    fn(n, "index.js")
    for n in "greet add slow promise fail afail badResult mapResult undef chatty kw rest busy".split()
] + [
    fn("single", "single.js"),
    fn("single_default", "single.js", "default"),
    fn("Counter.incr", "model.js"),
    fn("Counter.aget", "model.js"),
    fn("hi", "esm.mjs"),
    fn("arrow", "esm.mjs"),
    fn("esm_default", "esm.mjs", "default"),
    fn("mul", "esmpkg/lib.js"),
    fn("tla", "esmpkg/tla.js"),
]


class RunnerContract:
    """Tests shared by both runners; subclasses set LANG, ROOT, FUNCS."""

    LANG = None
    ROOT = None
    FUNCS = None

    def setUp(self):
        self.w = Worker(self.LANG, self.ROOT)
        self.addCleanup(self.w.stop)
        self.meta = self.w.load(self.FUNCS)
        self.assertEqual(self.meta["type"], "MetaData", self.meta)
        self.by_name = {f["name"]: f for f in self.meta["functions"]}

    def ok(self, msg):
        self.assertTrue(msg["ok"], msg)
        return msg["result"]

    def err(self, msg):
        self.assertFalse(msg["ok"], msg)
        return msg["error"]

    def test_metadata_lists_every_function(self):
        self.assertEqual(set(self.by_name), {f["name"] for f in self.FUNCS})
        for f in self.meta["functions"]:
            self.assertIsInstance(f["params"], list)
            self.assertIsInstance(f["is_async"], bool)

    def test_sync_call(self):
        self.assertEqual(self.ok(self.w.call("greet", "Ada")), "Hello, Ada!")
        self.assertEqual(self.ok(self.w.call("add", 2, 3)), 5)

    def test_kwargs(self):
        name = "punctuation" if self.LANG == "python" else "punct"
        self.assertEqual(self.ok(self.w.call("greet", "Ada", **{name: "?"})), "Hello, Ada?")
        self.assertEqual(self.ok(self.w.call("greet", **{"name": "Bo", name: "."})), "Hello, Bo.")

    def test_unknown_kwarg_is_type_error(self):
        e = self.err(self.w.call("add", 1, 2, nope=3))
        self.assertEqual(e["type"], "TypeError")
        self.assertIn("nope", e["message"])

    def test_exception(self):
        e = self.err(self.w.call("fail", "boom"))
        self.assertEqual(e["type"], "ValueError" if self.LANG == "python" else "TypeError")
        self.assertEqual(e["message"], "boom")
        self.assertIn("fail", e["traceback"])

    def test_unknown_function(self):
        e = self.err(self.w.call("does_not_exist"))
        self.assertEqual(e["type"], "NotFound")
        self.assertIn("does_not_exist", e["message"])

    def test_non_serializable_result(self):
        e = self.err(self.w.call("bad_result" if self.LANG == "python" else "badResult"))
        self.assertEqual(e["type"], "SerializationError")
        self.assertIn("type object" if self.LANG == "python" else "BigInt", e["message"])

    def test_print_goes_to_log_not_protocol(self):
        self.assertEqual(self.ok(self.w.call("chatty", 200)), 200)
        # The stream stays in sync: the next call still works.
        self.assertEqual(self.ok(self.w.call("add", 1, 1)), 2)
        self.w.close_input()
        self.assertEqual(self.w.wait(), 0)
        out = self.w.stdout()
        self.assertIn('{"type":"Meta"} line 199', out)
        self.assertIn("to stderr", self.w.stderr())

    def test_class_method_single_instance(self):
        self.assertEqual(self.ok(self.w.call("Counter.incr")), {"n": 1, "instances": 1})
        self.assertEqual(self.ok(self.w.call("Counter.incr", 5)), {"n": 6, "instances": 1})
        if "Counter.aget" in self.by_name:
            self.assertEqual(self.ok(self.w.call("Counter.aget")), 6)
        self.assertEqual(self.by_name["Counter.incr"]["params"], ["by"])

    def test_multiplexed_ids(self):
        for i in range(50):
            self.w.invoke(i, "add", [i, 1])
        seen = {}
        for _ in range(50):
            m = self.w.recv()
            seen[m["id"]] = m["result"]
        self.assertEqual(seen, {i: i + 1 for i in range(50)})

    def test_eof_exits_zero(self):
        self.w.close_input()
        self.assertEqual(self.w.wait(), 0)

    def test_eof_exits_promptly_with_call_in_flight(self):
        self.w.invoke(1, "hang" if self.LANG == "python" else "slow", [3600] if self.LANG == "python" else [3600000])
        time.sleep(0.1)
        start = time.monotonic()
        self.w.close_input()
        self.assertEqual(self.w.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - start, 2.0)

    def test_frames_sent_before_eof_are_answered(self):
        # The host may write calls and close fd 3 straight away: calls that
        # are quick to run are still answered before the worker exits.
        for i in range(20):
            self.w.invoke(i, "add", [i, i])
        self.w.close_input()
        got = sorted(self.w.recv()["result"] for _ in range(20))
        self.assertEqual(got, [2 * i for i in range(20)])
        self.assertEqual(self.w.wait(), 0)

    def test_oversized_frame_exits_2(self):
        self.w.send_raw(struct.pack(">I", 64 * 1024 * 1024 + 1))
        self.assertEqual(self.w.wait(), 2)
        self.assertIn("exceeds", self.w.stderr())

    def test_large_frames_both_ways(self):
        big = "x" * (3 * 1024 * 1024)
        self.assertEqual(self.ok(self.w.call("add", big, "y")), big + "y")

    def test_unicode(self):
        if self.LANG == "python":
            self.assertEqual(self.ok(self.w.call("unicode_echo", "héllo 🍄")), "héllo 🍄 ✓")
        else:
            self.assertEqual(self.ok(self.w.call("greet", "🍄", "é")), "Hello, 🍄é")



    def test_undecodable_call_frames_are_answered_and_the_worker_keeps_serving(self):
        deep = b"[" * 5000 + b"]" * 5000
        frames = [
            (7, b'{"type":"Invoke","id":7,"name":"add","args":[' + deep + b'],"kwargs":{},"timeout_ms":30000}'),
            (8, b'{"type":"Invoke","id":8,"name":"add","args":["\xff\xfe"],"kwargs":{},"timeout_ms":30000}'),
        ]
        for call_id, raw in frames:
            self.w.send_raw(struct.pack(">I", len(raw)) + raw)
            msg = self.w.recv()
            self.assertEqual((msg["type"], msg["id"]), ("InvokeResult", call_id), msg)
            if self.LANG == "python":
                self.assertFalse(msg["ok"], msg)
                self.assertIn("could not be decoded", json.dumps(msg["error"]))
        self.assertEqual(self.ok(self.w.call("add", 2, 3)), 5)


class PythonRunnerTest(RunnerContract, unittest.TestCase):
    LANG = "python"
    ROOT = PY_APP
    FUNCS = PY_FUNCS

    def test_metadata_params(self):
        b = self.by_name
        self.assertEqual(
            b["greet"],
            {
                "name": "greet",
                "params": ["name", "punctuation"],
                "is_async": False,
                "signature": [
                    {"name": "name", "kind": "positional_or_keyword", "default": False},
                    {"name": "punctuation", "kind": "positional_or_keyword", "default": True},
                ],
            },
        )
        self.assertEqual(b["aslow"]["params"], ["delay"])
        self.assertTrue(b["aslow"]["is_async"])
        self.assertEqual(b["varargs"]["params"], ["first", "*rest", "flag", "**extra"])
        self.assertEqual(b["Counter.peek"]["params"], [])

    def test_signature_kinds(self):
        kinds = lambda name: [(p["name"], p["kind"], p["default"]) for p in self.by_name[name]["signature"]]
        self.assertEqual(
            kinds("varargs"),
            [
                ("first", "positional_or_keyword", False),
                ("rest", "var_positional", False),
                ("flag", "keyword_only", True),
                ("extra", "var_keyword", False),
            ],
        )
        # Bound methods leave `self` out; the SDK's wrappers show the wrapped function.
        self.assertEqual(kinds("Model.predict"), [("x", "positional_or_keyword", False), ("scale", "positional_or_keyword", True)])
        self.assertEqual(kinds("ping"), [])
        # A parameter annotated morel.Request is the runner's to fill.
        self.assertEqual(
            kinds("get_item"),
            [("item_id", "positional_or_keyword", False), ("request", "request", False), ("full", "positional_or_keyword", True)],
        )

    def test_request_is_passed_to_the_parameter_that_asks_for_it(self):
        request = {
            "method": "GET",
            "path": "/shop/items/42",
            "headers": [["user-agent", "test/1"], ["x-a", "1"], ["x-a", "2"]],
            "query": [["tag", "a"], ["tag", "b"]],
        }
        self.w.invoke(5, "get_item", [], {"item_id": "42"}, request=request)
        msg = self.w.recv()
        self.assertEqual(
            self.ok(msg),
            {"id": "42", "full": False, "method": "GET", "path": "/shop/items/42", "agent": "test/1", "tags": ["a", "b"]},
        )
        # A function without a request parameter ignores one it is sent.
        self.w.invoke(6, "add", [1, 2], request=request)
        self.assertEqual(self.ok(self.w.recv()), 3)

    def test_response_sets_status_and_headers(self):
        msg = self.w.call("create_item", "pen")
        self.assertEqual(msg["result"], {"name": "pen"})
        self.assertEqual(msg["response"], {"status": 201, "headers": [["Location", "/items/7"]], "raw": False})
        # A text body with a content type other than JSON is sent as it is (async too).
        msg = self.w.call("page")
        self.assertEqual(msg["result"], "<p>hi</p>")
        self.assertEqual(msg["response"], {"status": 200, "headers": [["content-type", "text/html"]], "raw": True})
        # Plain results carry no response.
        self.assertNotIn("response", self.w.call("add", 1, 2))
        err = self.err(self.w.call("bad_response"))
        self.assertEqual(err["type"], "InvalidResponse")
        self.assertIn("status 99", err["message"])
        err = self.err(self.w.call("create_item", "pen", status=700))
        self.assertEqual(err["type"], "ValueError")

    def test_async_call(self):
        self.assertEqual(self.ok(self.w.call("agreet", "Ada")), "async hi Ada")
        self.assertEqual(self.ok(self.w.call("aslow", 0.01)), {"slept": 0.01})

    def test_async_exception(self):
        e = self.err(self.w.call("afail"))
        self.assertEqual(e["type"], "KeyError")
        self.assertIn("missing", e["message"])
        self.assertIn("afail", e["traceback"])

    def test_sync_concurrency(self):
        start = time.monotonic()
        for i in range(4):
            self.w.invoke(i, "slow", [0.3])
        results = [self.w.recv() for _ in range(4)]
        elapsed = time.monotonic() - start
        self.assertTrue(all(r["ok"] for r in results), results)
        self.assertLess(elapsed, 1.0)

    def test_async_concurrency(self):
        start = time.monotonic()
        for i in range(20):
            self.w.invoke(i, "aslow", [0.3])
        results = [self.w.recv() for _ in range(20)]
        elapsed = time.monotonic() - start
        self.assertTrue(all(r["ok"] for r in results), results)
        self.assertLess(elapsed, 1.0)

    def test_async_system_exit_does_not_kill_loop(self):
        e = self.err(self.w.call("aexit"))
        self.assertEqual(e["type"], "SystemExit")
        self.assertEqual(self.ok(self.w.call("agreet", "still here")), "async hi still here")

    def test_sync_calls_not_blocked_by_async(self):
        self.w.invoke(1, "forever", [])
        self.assertEqual(self.ok(self.w.call("add", 1, 2)), 3)

    def test_async_served_while_all_sync_workers_hang(self):
        for i in range(8):
            self.w.invoke(i, "hang", [])
        time.sleep(0.1)
        self.assertEqual(self.ok(self.w.call("agreet", "x")), "async hi x")
        start = time.monotonic()
        self.w.close_input()
        self.assertEqual(self.w.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - start, 2.0)

    def test_eof_exits_even_if_event_loop_is_blocked(self):
        self.w.invoke(1, "block_loop", [3600])
        time.sleep(0.2)
        start = time.monotonic()
        self.w.close_input()
        self.assertEqual(self.w.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - start, 2.0)

    def test_internal_cancellation_still_replies(self):
        self.assertEqual(self.err(self.w.call("self_cancel"))["type"], "CancelledError")

    def test_cancel_async(self):
        self.w.invoke(7, "forever", [])
        time.sleep(0.05)
        self.w.send({"type": "Cancel", "id": 7})
        # No reply for the cancelled call; the next reply is for the next call.
        self.w.invoke(8, "add", [1, 2])
        m = self.w.recv()
        self.assertEqual(m["id"], 8)
        # Cancelling unknown / sync ids is harmless.
        self.w.send({"type": "Cancel", "id": 12345})
        self.assertEqual(self.ok(self.w.call("add", 2, 2)), 4)

    def test_result_conversions(self):
        self.assertEqual(self.ok(self.w.call("pair")), [1, "two", None])
        self.assertIsNone(self.ok(self.w.call("nothing")))
        self.assertIn("result", self.w.call("nothing"))

    def test_nan_is_serialization_error(self):
        self.assertEqual(self.err(self.w.call("nan"))["type"], "SerializationError")

    def test_generator_rejected(self):
        e = self.err(self.w.call("numbers"))
        self.assertEqual(e["type"], "SerializationError")
        self.assertIn("generator", e["message"])

    def test_wrong_arg_count(self):
        e = self.err(self.w.call("add", 1))
        self.assertEqual(e["type"], "TypeError")
        e = self.err(self.w.call("agreet"))
        self.assertEqual(e["type"], "TypeError")

    def test_varargs(self):
        self.assertEqual(
            self.ok(self.w.call("varargs", 1, 2, 3, flag=True, other="x")),
            [1, [2, 3], True, {"other": "x"}],
        )

    def test_package_module_imports_sibling(self):
        self.assertEqual(self.ok(self.w.call("times_nine", 2)), 18)

    def test_module_shadowing_stdlib(self):
        self.assertEqual(self.ok(self.w.call("shadowed")), "user json.py")

    def test_import_prints_to_log(self):
        self.w.close_input()
        self.w.wait()
        self.assertEqual(self.w.stdout().count("hello.py imported"), 1)

    def test_sdk_decorated_class(self):
        self.assertEqual(self.ok(self.w.call("Model.predict", 3)), {"y": 6, "calls": 1})
        self.assertEqual(self.ok(self.w.call("Model.predict", x=1, scale=5)), {"y": 5, "calls": 2})
        self.assertEqual(self.ok(self.w.call("ping")), "pong")

    @unittest.skipUnless(os.path.exists(DISCOVER_PY), "discover.py not present")
    def test_params_agree_with_static_discovery(self):
        proc = subprocess.run(
            [sys.executable, DISCOVER_PY, PY_APP, "hello.py", "models.py", "sdk_app.py"],
            capture_output=True,
            text=True,
            check=True,
        )
        static = {}
        for f in json.loads(proc.stdout)["files"]:
            for d in f["functions"]:
                static[d["name"]] = d
        static["Counter.incr"] = {"params": ["by"], "is_async": False}
        for name, meta in self.by_name.items():
            if name in static:
                self.assertEqual(meta["params"], static[name]["params"], name)
                self.assertEqual(meta["is_async"], static[name]["is_async"], name)

    def test_protocol_fds_not_inherited(self):
        fds = self.ok(self.w.call("child_fds"))
        # ls itself opens one descriptor for the directory listing.
        self.assertNotIn(4, fds)
        self.assertLessEqual(len(fds), 4, fds)

    def test_string_ids(self):
        self.w.invoke("abc", "add", [1, 2])
        self.assertEqual(self.w.recv(), {"type": "InvokeResult", "id": "abc", "ok": True, "result": 3})


PY_ASYNC = {"aslow", "agreet", "afail", "forever", "aexit", "block_loop", "self_cancel", "Counter.aget", "ping", "page"}


class PythonSyncOnlyRunnerTest(RunnerContract, unittest.TestCase):
    """Only plain functions loaded: the runner uses its thread-only mode."""

    LANG = "python"
    ROOT = PY_APP
    FUNCS = [f for f in PY_FUNCS if f["name"] not in PY_ASYNC]

    def test_no_async_in_metadata(self):
        self.assertFalse(any(f["is_async"] for f in self.meta["functions"]))

    def test_sync_concurrency(self):
        start = time.monotonic()
        for i in range(4):
            self.w.invoke(i, "slow", [0.3])
        results = [self.w.recv() for _ in range(4)]
        self.assertTrue(all(r["ok"] for r in results), results)
        self.assertLess(time.monotonic() - start, 1.0)

    def test_fast_calls_not_blocked_by_slow_ones(self):
        self.w.invoke(1, "slow", [1.0])
        start = time.monotonic()
        self.assertEqual(self.ok(self.w.call("add", 1, 2)), 3)
        self.assertLess(time.monotonic() - start, 0.5)
        self.assertEqual(self.w.recv()["id"], 1)

    def test_concurrency_limit(self):
        w = Worker("python", PY_APP)
        self.addCleanup(w.stop)
        self.assertEqual(w.load([fn("slow", "hello.py")], concurrency=2)["type"], "MetaData")
        start = time.monotonic()
        for i in range(4):
            w.invoke(i, "slow", [0.25])
        for _ in range(4):
            self.assertTrue(w.recv()["ok"])
        elapsed = time.monotonic() - start
        self.assertGreater(elapsed, 0.45)  # two rounds of two
        self.assertLess(elapsed, 1.5)

    def test_cancel_and_unknown_frames_are_ignored(self):
        self.w.send({"type": "Cancel", "id": 1})
        self.w.send({"type": "Bogus"})
        self.assertEqual(self.ok(self.w.call("add", 2, 2)), 4)
        self.assertIn("Bogus", self.w.stderr())

    def test_all_workers_hung_still_exits_on_eof(self):
        for i in range(8):
            self.w.invoke(i, "hang", [])
        time.sleep(0.1)
        start = time.monotonic()
        self.w.close_input()
        self.assertEqual(self.w.wait(timeout=5), 0)
        self.assertLess(time.monotonic() - start, 2.0)


class PythonServingTest(unittest.TestCase):
    """How runner.py shares fd 3 and its caller threads: sync calls run inline on the reading
    thread, and a call that stays in user code loses the reading role to an idle thread."""

    def worker(self, names, concurrency):
        w = Worker("python", PY_APP)
        self.addCleanup(w.stop)
        meta = w.load([fn(n, "hello.py") for n in names], concurrency=concurrency)
        self.assertEqual(meta["type"], "MetaData", meta)
        return w

    def answers(self, w, ids, timeout=10.0):
        """The replies to exactly ``ids``, by id (order of arrival is free)."""
        deadline = time.monotonic() + timeout
        got = {}
        while len(got) < len(ids):
            m = w.recv(timeout=max(0.01, deadline - time.monotonic()))
            self.assertIn(m["id"], ids, m)
            self.assertNotIn(m["id"], got, m)
            got[m["id"]] = m
        return got

    def test_hung_sync_call_does_not_stop_other_sync_calls(self):
        for names in (["hang", "add"], ["hang", "add", "agreet"]):  # without / with the async side
            with self.subTest(names=names):
                w = self.worker(names, concurrency=2)
                w.invoke(1, "hang", [])
                for i in range(2, 22):
                    w.invoke(i, "add", [i, 1])
                got = self.answers(w, set(range(2, 22)), timeout=5.0)
                self.assertEqual({i: m["result"] for i, m in got.items()}, {i: i + 1 for i in range(2, 22)})

    def test_answers_read_with_a_hung_call_are_not_held_back(self):
        # One write brings a quick call, a call that never returns and another quick call:
        # the first answer must not wait for the hung call.  With a second caller the third
        # call runs on it; with one caller it waits (nobody reads), but answer 1 still comes.
        for concurrency, want in ((2, {1: 2, 3: 6}), (1, {1: 2})):
            with self.subTest(concurrency=concurrency):
                w = self.worker(["hang", "add"], concurrency=concurrency)
                frames = b""
                for call_id, name, args in ((1, "add", [1, 1]), (2, "hang", []), (3, "add", [3, 3])):
                    msg = {"type": "Invoke", "id": call_id, "name": name, "args": args, "kwargs": {}}
                    body = json.dumps(msg).encode()
                    frames += struct.pack(">I", len(body)) + body
                w.send_raw(frames)
                got = self.answers(w, set(want), timeout=5.0)
                self.assertEqual({i: m["result"] for i, m in got.items()}, want)

    def test_hung_sync_call_found_after_the_worker_was_idle(self):
        # The watchdog sleeps once no sync call has run for a while; the next call wakes it.
        w = self.worker(["hang", "add"], concurrency=2)
        self.assertEqual(w.call("add", 1, 1)["result"], 2)
        time.sleep(1.0)  # longer than the watchdog's idle period (WATCH_IDLE_TICKS ticks)
        w.invoke(1, "hang", [])
        w.invoke(2, "add", [2, 2])
        self.assertEqual(self.answers(w, {2}, timeout=5.0)[2]["result"], 4)

    def test_async_call_completes_while_a_sync_call_hangs(self):
        # concurrency 2: the other caller reads; concurrency 1: the spare reader does.
        for concurrency in (2, 1):
            with self.subTest(concurrency=concurrency):
                w = self.worker(["hang", "agreet", "aslow"], concurrency=concurrency)
                w.invoke(1, "hang", [])
                w.invoke(2, "agreet", ["x"])
                w.invoke(3, "aslow", [0.01])
                got = self.answers(w, {2, 3}, timeout=5.0)
                self.assertEqual(got[2]["result"], "async hi x")
                self.assertEqual(got[3]["result"], {"slept": 0.01})

    def test_two_slow_sync_calls_run_at_once(self):
        w = self.worker(["slow", "meet"], concurrency=2)
        # Each call returns only once the other one has arrived.
        w.invoke(1, "meet", [5])
        w.invoke(2, "meet", [5])
        got = self.answers(w, {1, 2}, timeout=10.0)
        self.assertEqual([got[1].get("result"), got[2].get("result")], ["met", "met"], got)
        start = time.monotonic()
        w.invoke(3, "slow", [0.3])
        w.invoke(4, "slow", [0.3])
        got = self.answers(w, {3, 4})
        self.assertTrue(got[3]["ok"] and got[4]["ok"], got)
        self.assertLess(time.monotonic() - start, 0.55)  # one after the other takes 0.6 s

    def test_cancel_async_call(self):
        # Through the caller that reads (concurrency 2, the other caller hung) and through the
        # spare reader (concurrency 1, the only caller hung).
        for concurrency in (2, 1):
            with self.subTest(concurrency=concurrency):
                w = self.worker(["hang", "cancellable", "acancelled", "agreet"], concurrency=concurrency)
                w.invoke(1, "hang", [])
                w.invoke(2, "cancellable", ["k"])
                w.invoke(3, "agreet", ["x"])  # started after call 2: once it answers, 2 runs
                self.answers(w, {3}, timeout=5.0)
                w.send({"type": "Cancel", "id": 2})
                deadline = time.monotonic() + 5.0
                call_id = 100
                while True:
                    call_id += 1
                    w.invoke(call_id, "acancelled", ["k"])
                    if self.answers(w, {call_id}, timeout=5.0)[call_id]["result"]:
                        break
                    self.assertLess(time.monotonic(), deadline, "call 2 was never cancelled")
                    time.sleep(0.01)
                # No reply comes for the cancelled call: the next one is for the next call.
                w.invoke(200, "agreet", ["z"])
                self.assertEqual(self.answers(w, {200}, timeout=5.0)[200]["result"], "async hi z")

    def test_many_pipelined_calls(self):
        n = 2000
        for names in (["add"], ["add", "agreet"]):
            with self.subTest(names=names):
                w = self.worker(names, concurrency=8)
                with_async = "agreet" in names
                frames = []
                for i in range(n):
                    if with_async and i % 3 == 0:
                        msg = {"type": "Invoke", "id": i, "name": "agreet", "args": [str(i)], "kwargs": {}}
                    else:
                        msg = {"type": "Invoke", "id": i, "name": "add", "args": [i, i], "kwargs": {}}
                    body = json.dumps(msg).encode()
                    frames.append(struct.pack(">I", len(body)) + body)
                # All at once, from a thread: the frames are larger than the pipe, and so are
                # the answers, so writing and reading must overlap.
                writer = threading.Thread(target=w.send_raw, args=(b"".join(frames),))
                writer.start()
                got = self.answers(w, set(range(n)), timeout=30.0)
                writer.join(timeout=10.0)
                self.assertFalse(writer.is_alive())
                for i, m in got.items():
                    want = "async hi %d" % i if with_async and i % 3 == 0 else 2 * i
                    self.assertEqual(m.get("result"), want, m)


class NodeRunnerTest(RunnerContract, unittest.TestCase):
    LANG = "node"
    ROOT = NODE_APP
    FUNCS = NODE_FUNCS

    def setUp(self):
        if NODE is None:
            self.skipTest("node is not installed")
        super().setUp()

    def test_metadata_params(self):
        b = self.by_name
        opt = lambda name: {"name": name, "kind": "positional_or_keyword", "default": True}
        self.assertEqual(
            b["greet"],
            {"name": "greet", "params": ["name", "punct"], "is_async": False, "signature": [opt("name"), opt("punct")]},
        )
        self.assertEqual(b["add"]["params"], ["a", "b"])
        self.assertEqual(b["slow"], {"name": "slow", "params": ["ms"], "is_async": True, "signature": [opt("ms")]})
        self.assertEqual(b["promise"]["params"], ["x"])
        self.assertEqual(b["kw"]["params"], ["a", "b", "c"])
        self.assertEqual(b["rest"]["params"], ["first", "...others"])
        # JavaScript parameters may all be left out; `...rest` takes the rest.
        self.assertEqual(
            b["rest"]["signature"],
            [opt("first"), {"name": "others", "kind": "var_positional", "default": True}],
        )
        self.assertEqual(b["single"]["params"], ["x"])
        self.assertEqual(
            b["arrow"], {"name": "arrow", "params": ["a", "b"], "is_async": True, "signature": [opt("a"), opt("b")]}
        )
        self.assertTrue(b["mul"]["is_async"])

    def test_promise_results(self):
        self.assertEqual(self.ok(self.w.call("promise", 21)), 42)
        self.assertEqual(self.ok(self.w.call("slow", 5)), {"slept": 5})

    def test_async_exception(self):
        e = self.err(self.w.call("afail"))
        self.assertEqual(e["type"], "NotFoundish")
        self.assertEqual(e["message"], "custom error")

    def test_concurrency(self):
        start = time.monotonic()
        for i in range(4):
            self.w.invoke(i, "slow", [300])
        results = [self.w.recv() for _ in range(4)]
        elapsed = time.monotonic() - start
        self.assertTrue(all(r["ok"] for r in results), results)
        self.assertLess(elapsed, 1.0)

    def test_kwargs_fill_defaults(self):
        self.assertEqual(self.ok(self.w.call("kw", 1, c=9)), [1, 2, 9])
        self.assertEqual(self.ok(self.w.call("kw", b=5, a=0)), [0, 5, [1, 2]])
        e = self.err(self.w.call("kw", 1, a=2))
        self.assertEqual(e["type"], "TypeError")
        self.assertIn("multiple values", e["message"])

    def test_undefined_is_null(self):
        m = self.w.call("undef")
        self.assertTrue(m["ok"])
        self.assertIsNone(m["result"])

    def test_map_result_rejected(self):
        e = self.err(self.w.call("mapResult"))
        self.assertEqual(e["type"], "SerializationError")
        self.assertIn("Map", e["message"])

    def test_default_export_function(self):
        self.assertEqual(self.ok(self.w.call("single", 4)), 8)
        self.assertEqual(self.ok(self.w.call("single_default", 5)), 10)

    def test_esm_modules(self):
        self.assertEqual(self.ok(self.w.call("hi", "Ada")), "hi Ada from esm")
        self.assertEqual(self.ok(self.w.call("arrow", 6, 7)), 42)
        self.assertEqual(self.ok(self.w.call("esm_default", 1)), ["default", 1])
        self.assertEqual(self.ok(self.w.call("mul", 3, 4)), 12)

    def test_top_level_await_module(self):
        self.assertEqual(self.ok(self.w.call("tla", 41)), 42)

    @unittest.skipUnless(os.path.exists(DISCOVER_JS), "discover.js not present")
    def test_params_agree_with_static_discovery(self):
        proc = subprocess.run(
            [NODE, DISCOVER_JS, NODE_APP, "index.js", "single.js", "esm.mjs", "esmpkg/lib.js"],
            capture_output=True,
            text=True,
            check=True,
        )
        report = json.loads(proc.stdout)
        self.assertEqual(report["errors"], [])
        static = {}
        for f in report["files"]:
            for d in f["functions"]:
                static[d["name"]] = d
        compared = 0
        for name, meta in self.by_name.items():
            if name in static:
                compared += 1
                self.assertEqual(meta["params"], static[name]["params"], name)
                self.assertEqual(meta["is_async"], static[name]["is_async"], name)
        self.assertGreater(compared, 10)

    def test_rest_params(self):
        self.assertEqual(self.ok(self.w.call("rest", 1, 2, 3)), [1, [2, 3]])


class LoadErrorTests(unittest.TestCase):
    def check(self, lang, root, functions, *needles):
        if lang == "node" and NODE is None:
            self.skipTest("node is not installed")
        w = Worker(lang, root)
        self.addCleanup(w.stop)
        msg = w.load(functions)
        self.assertEqual(msg["type"], "LoadError", msg)
        for needle in needles:
            self.assertIn(needle, msg["error"])
        self.assertEqual(w.wait(), 1)
        return msg["error"]

    def test_python_missing_function(self):
        self.check("python", PY_BROKEN, [fn("present", "good.py"), fn("absent", "good.py")], "absent", "good.py")

    def test_python_missing_method(self):
        self.check("python", PY_APP, [fn("Counter.nope", "models.py")], "Counter.nope", "models.py", "nope")

    def test_python_syntax_error(self):
        err = self.check("python", PY_BROKEN, [fn("ok", "syntax_err.py")], "syntax_err.py", "'ok'", "SyntaxError")
        self.assertIn("line 4", err)

    def test_python_missing_file(self):
        self.check("python", PY_BROKEN, [fn("x", "nowhere.py")], "nowhere.py", "'x'")

    def test_python_not_callable(self):
        self.check("python", PY_APP, [fn("created", "models.py")], "created", "not callable")

    def test_node_missing_function(self):
        self.check("node", NODE_BROKEN, [fn("present", "good.js"), fn("absent", "good.js")], "absent", "good.js")

    def test_node_syntax_error(self):
        self.check("node", NODE_BROKEN, [fn("ok", "syntax_err.js")], "syntax_err.js", "'ok'", "SyntaxError")

    def test_exits_when_the_host_dies_during_a_slow_load(self):
        # The module prints, then waits a minute while loading: a host that dies meanwhile
        # (fd 3 closed, nothing else sent) must not leave the worker running.
        for lang, root, f in (("python", PY_BROKEN, fn("never", "slow_load.py")), ("node", NODE_BROKEN, fn("never", "slow_load.mjs"))):
            if lang == "node" and NODE is None:
                continue
            with self.subTest(lang=lang):
                w = Worker(lang, root)
                self.addCleanup(w.stop)
                w.send({"type": "Load", "app": "t", "resource": "default", "root": root, "concurrency": 1, "functions": [f]})
                deadline = time.monotonic() + 10
                while "loading slowly" not in w.stdout():
                    self.assertLess(time.monotonic(), deadline, "the module never started loading")
                    time.sleep(0.02)
                start = time.monotonic()
                w.close_input()
                self.assertEqual(w.wait(timeout=10), 0)
                self.assertLess(time.monotonic() - start, 5.0)

    def test_load_and_invoke_then_eof(self):
        for lang, root, f in (("python", PY_APP, fn("add", "hello.py")), ("node", NODE_APP, fn("add", "index.js"))):
            if lang == "node" and NODE is None:
                continue
            w = Worker(lang, root)
            self.addCleanup(w.stop)
            w.send({"type": "Load", "app": "t", "resource": "default", "root": root, "concurrency": 2, "functions": [f]})
            w.invoke(1, "add", [20, 22])
            w.close_input()
            self.assertEqual(w.recv()["type"], "MetaData")
            self.assertEqual(w.recv()["result"], 42)
            self.assertEqual(w.wait(), 0)

    def test_python_eof_before_load(self):
        w = Worker("python", PY_APP)
        self.addCleanup(w.stop)
        w.close_input()
        self.assertEqual(w.wait(), 0)

    def test_node_eof_before_load(self):
        if NODE is None:
            self.skipTest("node is not installed")
        w = Worker("node", NODE_APP)
        self.addCleanup(w.stop)
        w.close_input()
        self.assertEqual(w.wait(), 0)


if __name__ == "__main__":
    unittest.main()
