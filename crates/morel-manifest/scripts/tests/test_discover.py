"""Tests for the static discovery scripts discover.py and discover.js.

Run with:
    python3 -m unittest discover -s crates/morel-manifest/scripts/tests
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SCRIPTS = os.path.dirname(HERE)
FIXTURES = os.path.join(HERE, "fixtures")
NODE = shutil.which("node")


def run(cmd, *args):
    proc = subprocess.run(cmd + list(args), capture_output=True, text=True, timeout=60)
    return proc


def functions(report):
    """{file: {name: function}} for convenient assertions."""
    return {f["file"]: {fn["name"]: fn for fn in f["functions"]} for f in report["files"]}


def fn(name, params, is_async=False, is_class=False, endpoint=None, method=None, path=None):
    return {
        "name": name,
        "params": params,
        "is_async": is_async,
        "is_class": is_class,
        "endpoint": endpoint,
        "http_method": method,
        "http_path": path,
    }


class PythonDiscoveryTest(unittest.TestCase):
    def discover(self, root, *files):
        proc = run([sys.executable, os.path.join(SCRIPTS, "discover.py"), root], *files)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return json.loads(proc.stdout)

    def test_plain_functions(self):
        report = self.discover(os.path.join(FIXTURES, "py_plain"))
        self.assertEqual(report["errors"], [])
        self.assertEqual(report["endpoints"], {})
        self.assertEqual([f["file"] for f in report["files"]], ["hello.py"])
        self.assertEqual(
            report["files"][0]["functions"],
            [
                fn("greet", ["name"]),
                fn("fetch", ["url", "timeout", "**options"], is_async=True),
                fn("positional", ["a", "b", "c", "*rest"]),
                fn("outer", []),
            ],
        )

    def test_skipped_files_and_no_recursion(self):
        names = [f["file"] for f in self.discover(os.path.join(FIXTURES, "py_plain"))["files"]]
        for skipped in ("setup.py", "conftest.py", "test_hello.py", "hello_test.py", "sub/deep.py"):
            self.assertNotIn(skipped, names)

    def test_explicit_files(self):
        root = os.path.join(FIXTURES, "py_plain")
        report = self.discover(root, "sub/deep.py", os.path.join(root, "setup.py"))
        self.assertEqual(
            functions(report),
            {"sub/deep.py": {"deep": fn("deep", [])}, "setup.py": {"setup_thing": fn("setup_thing", [])}},
        )

    def test_missing_explicit_file_is_an_error(self):
        report = self.discover(os.path.join(FIXTURES, "py_plain"), "nope.py")
        self.assertEqual(report["files"], [])
        self.assertEqual(report["errors"], [{"file": "nope.py", "line": 0, "message": "file not found"}])

    def test_endpoints(self):
        report = self.discover(os.path.join(FIXTURES, "py_sdk"))
        self.assertEqual(report["errors"], [])
        self.assertEqual(
            report["endpoints"],
            {
                "api": {
                    "var": "api",
                    "file": "shop.py",
                    "options": {"workers": [1, 4], "concurrency": 8, "timeout_s": 30},
                },
                "admin-api": {
                    "var": "admin",
                    "file": "shop.py",
                    "options": {"env": {"MODE": "admin"}, "public": False, "memory_mb": 256},
                },
                "jobs": {
                    "var": "worker",
                    "file": "jobs.py",
                    "options": {"workers": [0, 2], "idle_timeout_s": 60, "cpu": 0.5},
                },
            },
        )

    def test_routes_and_markers(self):
        shop = functions(self.discover(os.path.join(FIXTURES, "py_sdk")))["shop.py"]
        self.assertEqual(shop["list_items"], fn("list_items", ["limit"], endpoint="api"))
        self.assertEqual(
            shop["get_item"],
            fn("get_item", ["item_id"], is_async=True, endpoint="api", method="GET", path="/items/{item_id}"),
        )
        self.assertEqual(shop["create_item"], fn("create_item", ["item"], endpoint="api", method="POST", path="/items"))
        self.assertEqual(shop["put_item"]["http_method"], "PUT")
        self.assertEqual(shop["delete_item"]["http_method"], "DELETE")
        self.assertEqual(shop["patch_item"]["http_method"], "PATCH")
        self.assertEqual(shop["plain_marker"], fn("plain_marker", ["x"]))
        # Undecorated functions in an SDK file are still listed.
        self.assertEqual(shop["undecorated"], fn("undecorated", ["y"]))
        # A look-alike decorator from another library is not an SDK route.
        self.assertEqual(shop["not_ours"], fn("not_ours", []))

    def test_class_functions(self):
        shop = functions(self.discover(os.path.join(FIXTURES, "py_sdk")))["shop.py"]
        class_fns = {k: v for k, v in shop.items() if v["is_class"]}
        self.assertEqual(
            class_fns,
            {
                "Inventory.count": fn("Inventory.count", [], is_class=True, endpoint="admin-api"),
                "Inventory.restock": fn(
                    "Inventory.restock", ["sku", "qty"], is_async=True, is_class=True, endpoint="admin-api"
                ),
                "Inventory.version": fn("Inventory.version", ["fmt"], is_class=True, endpoint="admin-api"),
                "Inventory.build": fn("Inventory.build", ["size"], is_class=True, endpoint="admin-api"),
            },
        )
        self.assertNotIn("Inventory", shop)

    def test_endpoints_imported_from_other_files(self):
        jobs = functions(self.discover(os.path.join(FIXTURES, "py_sdk")))["jobs.py"]
        self.assertEqual(jobs["nightly"]["endpoint"], "jobs")
        self.assertEqual(
            jobs["imported_endpoint_route"],
            fn("imported_endpoint_route", [], endpoint="api", method="GET", path="/from-jobs"),
        )
        self.assertEqual(jobs["module_attribute_endpoint"]["endpoint"], "admin-api")
        self.assertEqual(jobs["bare_imported_marker"], fn("bare_imported_marker", []))

    def test_imported_endpoint_with_single_file(self):
        # Only jobs.py is requested, the endpoint it uses is still described.
        report = self.discover(os.path.join(FIXTURES, "py_sdk"), "jobs.py")
        self.assertEqual(list(functions(report)), ["jobs.py"])
        self.assertIn("api", report["endpoints"])
        self.assertEqual(report["errors"], [])

    def test_errors(self):
        report = self.discover(os.path.join(FIXTURES, "py_errors"))
        errors = report["errors"]
        by_file = {}
        for e in errors:
            self.assertEqual(set(e), {"file", "line", "message"})
            by_file.setdefault(e["file"], []).append(e)
        # Syntax errors are reported, not fatal, and the file is left out.
        self.assertEqual(by_file["bad.py"], [{"file": "bad.py", "line": 4, "message": "invalid syntax"}])
        self.assertNotIn("bad.py", functions(report))
        self.assertEqual(by_file["latin.py"][0]["line"], 2)
        cfg = by_file["config.py"]
        msgs = [(e["line"], e["message"]) for e in cfg]
        self.assertTrue(any(l == 4 and "'workers'" in m and "not a literal" in m for l, m in msgs), msgs)
        self.assertTrue(any(l == 4 and "unknown option 'colour'" in m for l, m in msgs), msgs)
        self.assertTrue(any(l == 5 and "already defined" in m for l, m in msgs), msgs)
        self.assertTrue(any(l == 6 and "string literal" in m for l, m in msgs), msgs)
        self.assertTrue(any(l == 9 and "@cfg.get" in m for l, m in msgs), msgs)
        self.assertTrue(any(l == 16 and "2 route decorators" in m for l, m in msgs), msgs)
        # Literal options are kept even when a sibling option is rejected.
        self.assertEqual(report["endpoints"]["cfg"]["options"], {"concurrency": 2})
        config = functions(report)["config.py"]
        self.assertEqual(config["two_routes"]["http_path"], "/a")
        self.assertEqual(config["ok"], fn("ok", []))

    def test_does_not_run_user_code(self):
        # py_plain/hello.py raises SystemExit at import; a clean report proves
        # it was never executed.
        report = self.discover(os.path.join(FIXTURES, "py_plain"))
        self.assertIn("hello.py", functions(report))

    def test_bad_arguments(self):
        proc = run([sys.executable, os.path.join(SCRIPTS, "discover.py")])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("usage", proc.stderr)
        proc = run([sys.executable, os.path.join(SCRIPTS, "discover.py"), "/definitely/not/here"])
        self.assertEqual(proc.returncode, 2)
        proc = run([sys.executable, os.path.join(SCRIPTS, "discover.py"), FIXTURES, "../../elsewhere.py"])
        self.assertEqual(proc.returncode, 2)

    def test_empty_dir(self):
        with tempfile.TemporaryDirectory() as d:
            self.assertEqual(self.discover(d), {"files": [], "endpoints": {}, "errors": []})

    def test_sdk_agrees_with_discovery(self):
        # The decorators really are plain markers on the real SDK.
        sys.path.insert(0, os.path.join(SCRIPTS, "..", "..", "..", "sdk", "python"))
        dont_write = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            import morel
        finally:
            sys.path.pop(0)
            sys.dont_write_bytecode = dont_write
        api = morel.Endpoint("api", workers=(1, 4), concurrency=8)

        def f(x):
            return x

        # Endpoint functions are wrapped so a call from another resource goes through the gateway.
        wrapped = api.function(f)
        self.assertIs(wrapped.__wrapped__, f)
        self.assertEqual(wrapped.__morel_endpoint__, "api")
        self.assertEqual(wrapped(3), 3)
        g = api.post("/p")(lambda: 1)
        self.assertEqual((g.__morel_endpoint__, g.__morel_http_method__, g.__morel_http_path__), ("api", "POST", "/p"))

        class C:
            pass

        self.assertIs(morel.function(C), C)
        self.assertIsNone(C.__morel_endpoint__)
        # Outside a Morel worker there is no gateway to route the call to.
        with self.assertRaisesRegex(RuntimeError, "inside Morel workers"):
            morel.call("other", 1)


@unittest.skipIf(NODE is None, "node is not installed")
class NodeDiscoveryTest(unittest.TestCase):
    def discover(self, root, *files):
        proc = run([NODE, os.path.join(SCRIPTS, "discover.js"), root], *files)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        return json.loads(proc.stdout)

    def test_module_exports_object(self):
        report = self.discover(os.path.join(FIXTURES, "node_cjs_object"))
        self.assertEqual(report["errors"], [])
        self.assertEqual(report["endpoints"], {})
        self.assertEqual(
            report["files"],
            [
                {
                    "file": "index.js",
                    "functions": [
                        fn("greet", ["name", "greeting"]),
                        fn("add", ["a", "b"]),
                        fn("square", ["x"], is_async=True),
                        fn("sum", ["a", "b", "c"]),
                        fn("mul", ["x", "y"]),
                        fn("load", ["id"], is_async=True),
                        fn("save", ["record", "options"]),
                        fn("fetchUser", ["{id,fields}", "...extra"], is_async=True),
                        fn("helper", []),
                        fn("quoted-name", ["q"]),
                    ],
                }
            ],
        )

    def test_package_main(self):
        report = self.discover(os.path.join(FIXTURES, "node_main"))
        self.assertEqual(
            functions(report), {"lib/server.js": {"server": fn("server", ["event", "context"], is_async=True)}}
        )

    def test_esm_exports(self):
        report = self.discover(os.path.join(FIXTURES, "node_esm"))
        self.assertEqual(report["errors"], [])
        got = functions(report)["index.mjs"]
        self.assertEqual(
            list(got.values()),
            [
                fn("hello", ["name"]),
                fn("loadFile", ["path", "encoding"], is_async=True),
                fn("double", ["n"]),
                fn("triple", ["n"], is_async=True),
                fn("single", ["v"]),
                fn("internal", ["a", "b"]),
                fn("renamed", ["z"], is_async=True),
                fn("read", []),
                fn("something", []),
                fn("index", ["req"]),
            ],
        )
        for absent in ("PI", "limit", "Thing", "numbers", "other"):
            self.assertNotIn(absent, got)

    def test_other_export_forms(self):
        report = self.discover(
            os.path.join(FIXTURES, "node_forms"),
            "single.js",
            "members.js",
            "ref.js",
            "default_ident.mjs",
            "default_object.mjs",
            "asi.js",
        )
        self.assertEqual(report["errors"], [])
        got = functions(report)
        self.assertEqual(got["single.js"], {"single": fn("single", ["x", "y"])})
        self.assertEqual(
            got["members.js"],
            {
                "first": fn("first", ["a"]),
                "second": fn("second", ["b", "c"], is_async=True),
                "third": fn("third", ["p", "q"]),
                "viaCall": fn("viaCall", []),
            },
        )
        self.assertEqual(got["ref.js"], {"ping": fn("ping", []), "echo": fn("echo", ["msg"])})
        self.assertEqual(
            got["default_ident.mjs"],
            {"default_ident": fn("default_ident", ["request", "env"], is_async=True)},
        )
        self.assertEqual(got["default_object.mjs"], {"fetch": fn("fetch", ["request"], is_async=True)})
        self.assertEqual(got["asi.js"], {"a": fn("a", ["x"]), "b": fn("b", ["y"])})

    def test_sdk_forms(self):
        report = self.discover(os.path.join(FIXTURES, "node_sdk"), "cjs.js", "esm.mjs")
        self.assertEqual(report["errors"], [])
        self.assertEqual(
            report["endpoints"],
            {
                "api": {
                    "var": "api",
                    "file": "cjs.js",
                    "options": {
                        "workers": [0, 4],
                        "concurrency": 8,
                        "timeout_s": 2.5,
                        "env": {"GREETING": "hi\tthere", "LEVEL": "x"},
                        "public": False,
                        "cpu": -1,
                    },
                },
                # One number of workers is min and max.
                "jobs": {"var": "jobs", "file": "cjs.js", "options": {"workers": [3, 3]}},
                "web": {"var": "api", "file": "esm.mjs", "options": {}},
            },
        )
        got = functions(report)
        self.assertEqual(
            got["cjs.js"],
            {
                "find": fn("find", ["id", "request"], endpoint="api", method="GET", path="/items/{id}"),
                "make": fn("make", ["name"], endpoint="api", method="POST", path="/items"),
                "work": fn("work", ["task", "...rest"], is_async=True, endpoint="jobs"),
                "anywhere": fn("anywhere", ["x"]),
                # A function discovery cannot see: listed, with its route, without params.
                "later": fn("later", [], endpoint="api", method="DELETE", path="/items/{id}"),
                "plain": fn("plain", ["a"]),
                "notSdk": fn("notSdk", []),
                "listed": fn("listed", ["page"], is_async=True, endpoint="api", method="GET", path="/items"),
            },
        )
        self.assertEqual(
            got["esm.mjs"],
            {
                "page": fn("page", ["n"], endpoint="web", method="PATCH", path="/p/{n}"),
                "hook": fn("hook", ["event"], is_async=True),
            },
        )

    def test_sdk_forms_need_literals(self):
        report = self.discover(os.path.join(FIXTURES, "node_sdk"), "errors.js")
        errors = [(e["line"], e["message"]) for e in report["errors"]]
        self.assertEqual(
            errors,
            [
                (4, "the endpoint name must be a non-empty string literal"),
                (6, 'endpoint "api": option "concurrency": compute() is not a literal value; '
                    "discovery cannot evaluate code, write the value out"),
                (7, 'endpoint "api": unknown option "colour" (expected one of: workers, concurrency, '
                    "timeout_s, idle_timeout_s, memory_mb, cpu, env, public)"),
                (9, "endpoint \"api\" is already defined (variable 'api')"),
                (10, "the path given to api.get must be a string literal"),
                (11, "route path \"no-slash\" must start with '/'"),
                (12, 'unsupported HTTP method "TRACE" in api.route'),
                (13, "api.function needs a function, not a generator function"),
            ],
        )
        # The functions are still listed (the errors fail the build), without routes.
        self.assertEqual(functions(report)["errors.js"]["a"], fn("a", ["x"], endpoint="api"))

    def test_syntax_error(self):
        report = self.discover(os.path.join(FIXTURES, "node_bad"))
        self.assertEqual(report["files"], [])
        self.assertEqual(len(report["errors"]), 1)
        err = report["errors"][0]
        self.assertEqual((err["file"], err["line"]), ("index.js", 4))
        self.assertIn("SyntaxError", err["message"])

    def test_no_entry_file(self):
        report = self.discover(os.path.join(FIXTURES, "node_none"))
        self.assertEqual(report["files"], [])
        self.assertIn("no entry file", report["errors"][0]["message"])

    def test_missing_explicit_file(self):
        report = self.discover(os.path.join(FIXTURES, "node_forms"), "gone.js")
        self.assertEqual(report["files"], [])
        self.assertEqual(report["errors"][0]["file"], "gone.js")
        self.assertIn("not found", report["errors"][0]["message"])

    def test_does_not_run_user_code(self):
        with tempfile.TemporaryDirectory() as d:
            marker = os.path.join(d, "ran")
            with open(os.path.join(d, "index.js"), "w") as f:
                f.write(
                    "require('fs').writeFileSync(%s, 'x');\nexports.f = (a) => a;\n" % json.dumps(marker)
                )
            report = self.discover(d)
            self.assertEqual(functions(report), {"index.js": {"f": fn("f", ["a"])}})
            self.assertFalse(os.path.exists(marker))

    def test_bad_arguments(self):
        proc = run([NODE, os.path.join(SCRIPTS, "discover.js")])
        self.assertEqual(proc.returncode, 2)
        self.assertIn("usage", proc.stderr)
        proc = run([NODE, os.path.join(SCRIPTS, "discover.js"), "/definitely/not/here"])
        self.assertEqual(proc.returncode, 2)


if __name__ == "__main__":
    unittest.main()
