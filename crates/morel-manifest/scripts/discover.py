"""Static function discovery for Python Morel apps.

    python3 discover.py ROOT [FILE ...]

Parses the app's files with ``ast`` (user code is never imported or run) and
prints one JSON object describing the functions, the ``morel.Endpoint``
declarations and any problems found:

    {"files": [{"file": "hello.py", "functions": [...]}],
     "endpoints": {"api": {"var": "api", "file": "shop.py", "options": {...}}},
     "errors": [{"file": "bad.py", "line": 3, "message": "invalid syntax"}]}

Without FILE arguments every top-level ``*.py`` file in ROOT is scanned
(except setup.py, conftest.py, test_*.py and *_test.py).  FILE arguments are
paths relative to ROOT (absolute paths inside ROOT are accepted too).  An
error whose ``line`` is 0 is not tied to a particular line.  The exit code is
0 whenever a report was printed and 2 for bad arguments.
"""

import ast
import json
import os
import sys

SDK_MODULE = "morel"
ROUTE_METHODS = ("get", "post", "put", "delete", "patch")
ENDPOINT_OPTIONS = (
    "workers",
    "concurrency",
    "timeout_s",
    "idle_timeout_s",
    "memory_mb",
    "cpu",
    "env",
    "public",
)
SKIP_FILES = ("setup.py", "conftest.py")

USAGE = "usage: python3 discover.py ROOT [FILE ...]\n"


def default_files(root):
    out = []
    for name in sorted(os.listdir(root)):
        if not name.endswith(".py") or name in SKIP_FILES:
            continue
        if name.startswith("test_") or name.endswith("_test.py"):
            continue
        if os.path.isfile(os.path.join(root, name)):
            out.append(name)
    return out


def relative(root, path):
    full = path if os.path.isabs(path) else os.path.join(root, path)
    rel = os.path.relpath(os.path.normpath(full), root)
    return rel.replace(os.sep, "/")


def module_name(rel):
    if rel.endswith(".py"):
        rel = rel[:-3]
    parts = [p for p in rel.split("/") if p]
    if parts and parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def params_of(args, skip_first=False):
    names = [a.arg for a in list(args.posonlyargs) + list(args.args)]
    if skip_first and names:
        names = names[1:]
    if args.vararg is not None:
        names.append("*" + args.vararg.arg)
    names.extend(a.arg for a in args.kwonlyargs)
    if args.kwarg is not None:
        names.append("**" + args.kwarg.arg)
    return names


def dotted(node):
    """``a.b.c`` -> ["a", "b", "c"]; anything else -> None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
        return parts[::-1]
    return None


def jsonable(value):
    """Literal values -> JSON values (tuples/sets become lists)."""
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError("dictionary keys must be strings, got %r" % (k,))
            out[k] = jsonable(v)
        return out
    if isinstance(value, float) and (value != value or value in (float("inf"), float("-inf"))):
        raise ValueError("%r is not a valid JSON number" % value)
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    raise ValueError("values of type %s are not supported" % type(value).__name__)


class Discovery:
    def __init__(self, root):
        self.root = root
        self.errors = []
        self.endpoints = {}
        # module name -> parsed info (see parse_file), cached so that files
        # referenced through imports are parsed once.
        self.parsed = {}

    def error(self, file, line, message):
        self.errors.append({"file": file, "line": line or 0, "message": message})

    # -- pass 1: parse a file and find SDK imports and Endpoint objects ----

    def parse_file(self, rel, report=True):
        mod = module_name(rel)
        if mod in self.parsed:
            return self.parsed[mod]
        info = None
        path = os.path.join(self.root, rel)
        try:
            with open(path, "rb") as f:
                source = f.read()
            tree = ast.parse(source, filename=rel)
        except SyntaxError as e:
            if report:
                self.error(rel, e.lineno, e.msg)
        except (OSError, ValueError) as e:
            if report:
                self.error(rel, 0, "cannot read file: %s" % (getattr(e, "strerror", None) or e))
        else:
            info = self.scan_module(rel, tree, report)
        self.parsed[mod] = info
        return info

    def scan_module(self, rel, tree, report):
        info = {
            "file": rel,
            "tree": tree,
            "sdk_modules": set(),  # local names bound to the morel module
            "endpoint_ctors": set(),  # local names bound to morel.Endpoint
            "function_markers": set(),  # local names bound to morel.function
            "endpoint_vars": {},  # local var -> endpoint name
            "imports": {},  # local name -> (module, attribute or None)
        }
        for node in tree.body:
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name == SDK_MODULE:
                        info["sdk_modules"].add(alias.asname or alias.name)
                    elif alias.asname:
                        info["imports"][alias.asname] = (alias.name, None)
                    else:
                        top = alias.name.split(".")[0]
                        info["imports"][top] = (top, None)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                for alias in node.names:
                    local = alias.asname or alias.name
                    if node.module == SDK_MODULE:
                        if alias.name == "Endpoint":
                            info["endpoint_ctors"].add(local)
                        elif alias.name == "function":
                            info["function_markers"].add(local)
                    else:
                        info["imports"][local] = (node.module, alias.name)
        for node in tree.body:
            target = value = None
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            if not isinstance(target, ast.Name) or not self.is_endpoint_call(info, value):
                continue
            name = self.endpoint_from_call(rel, target.id, value, report)
            if name is not None:
                info["endpoint_vars"][target.id] = name
        return info

    def is_endpoint_call(self, info, node):
        if not isinstance(node, ast.Call):
            return False
        path = dotted(node.func)
        if path is None:
            return False
        if len(path) == 1:
            return path[0] in info["endpoint_ctors"]
        return len(path) == 2 and path[0] in info["sdk_modules"] and path[1] == "Endpoint"

    def endpoint_from_call(self, rel, var, call, report):
        name_node = call.args[0] if call.args else None
        extra_args = call.args[1:]
        options = {}
        problems = []
        for kw in call.keywords:
            if kw.arg is None:
                problems.append((kw.value.lineno, "endpoint %r: **kwargs are not supported" % var))
                continue
            if kw.arg == "name":
                name_node = kw.value
                continue
            if kw.arg not in ENDPOINT_OPTIONS:
                problems.append(
                    (
                        kw.value.lineno,
                        "endpoint %r: unknown option %r (expected one of: %s)"
                        % (var, kw.arg, ", ".join(ENDPOINT_OPTIONS)),
                    )
                )
                continue
            try:
                value = ast.literal_eval(kw.value)
            except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                problems.append(
                    (
                        kw.value.lineno,
                        "endpoint %r: option %r is not a literal value (%s); discovery "
                        "cannot evaluate code, write the value out" % (var, kw.arg, ast.unparse(kw.value)),
                    )
                )
                continue
            try:
                options[kw.arg] = jsonable(value)
            except ValueError as e:
                problems.append((kw.value.lineno, "endpoint %r: option %r: %s" % (var, kw.arg, e)))
        if extra_args:
            problems.append(
                (call.lineno, "endpoint %r: options must be passed as keyword arguments" % var)
            )
        name = None
        if name_node is None:
            problems.append((call.lineno, "endpoint %r: missing endpoint name" % var))
        elif isinstance(name_node, ast.Constant) and isinstance(name_node.value, str) and name_node.value:
            name = name_node.value
        else:
            problems.append(
                (call.lineno, "endpoint %r: the endpoint name must be a non-empty string literal" % var)
            )
        if report:
            for line, message in problems:
                self.error(rel, line, message)
        if name is not None:
            other = self.endpoints.get(name)
            if other is None:
                self.endpoints[name] = {"var": var, "file": rel, "options": options}
            elif report and (other["file"], other["var"]) != (rel, var):
                self.error(
                    rel,
                    call.lineno,
                    "endpoint %r is already defined in %s (variable %r)"
                    % (name, other["file"], other["var"]),
                )
        return name

    # -- resolving decorator targets to endpoints --------------------------

    def module_file(self, module):
        base = os.path.join(self.root, *module.split("."))
        for candidate in (base + ".py", os.path.join(base, "__init__.py")):
            if os.path.isfile(candidate):
                return relative(self.root, candidate)
        return None

    def imported_info(self, module):
        rel = self.module_file(module)
        if rel is None:
            return None
        return self.parse_file(rel, report=False)

    def endpoint_of(self, info, path):
        """Endpoint name for a dotted reference like ["api"] or ["shop", "api"]."""
        if len(path) == 1:
            local = path[0]
            if local in info["endpoint_vars"]:
                return info["endpoint_vars"][local]
            imported = info["imports"].get(local)
            if imported and imported[1] is not None:
                other = self.imported_info(imported[0])
                if other is not None:
                    return other["endpoint_vars"].get(imported[1])
            return None
        imported = info["imports"].get(path[0])
        if imported is None or imported[1] is not None:
            return None
        module = ".".join([imported[0]] + path[1:-1]) if len(path) > 2 else imported[0]
        other = self.imported_info(module)
        if other is None:
            return None
        return other["endpoint_vars"].get(path[-1])

    def classify_decorator(self, info, rel, dec):
        """Returns None (not ours) or a dict with endpoint/method/path."""
        call = None
        if isinstance(dec, ast.Call):
            call, dec = dec, dec.func
        path = dotted(dec)
        if path is None:
            return None
        if call is None:
            if len(path) == 1 and path[0] in info["function_markers"]:
                return {"endpoint": None, "method": None, "path": None}
            if len(path) == 2 and path[0] in info["sdk_modules"] and path[1] == "function":
                return {"endpoint": None, "method": None, "path": None}
        if len(path) < 2:
            return None
        endpoint = self.endpoint_of(info, path[:-1])
        if endpoint is None:
            return None
        attr = path[-1]
        if attr == "function":
            if call is not None:
                self.error(rel, dec.lineno, "use @%s.function without parentheses" % ".".join(path[:-1]))
            return {"endpoint": endpoint, "method": None, "path": None}
        if attr in ROUTE_METHODS:
            if call is None:
                self.error(
                    rel, dec.lineno, "@%s needs a path argument, e.g. @%s(\"/items\")" % (".".join(path), ".".join(path))
                )
                return {"endpoint": endpoint, "method": None, "path": None}
            route = None
            arg = call.args[0] if call.args else None
            for kw in call.keywords:
                if kw.arg == "path":
                    arg = kw.value
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                route = arg.value
                if not route.startswith("/"):
                    self.error(rel, dec.lineno, "route path %r must start with '/'" % route)
            else:
                self.error(rel, dec.lineno, "the path given to @%s must be a string literal" % ".".join(path))
            return {"endpoint": endpoint, "method": attr.upper() if route else None, "path": route}
        return None

    def markers(self, info, rel, node):
        found = [m for m in (self.classify_decorator(info, rel, d) for d in node.decorator_list) if m]
        routes = [m for m in found if m["method"]]
        if len(routes) > 1:
            self.error(
                rel,
                node.lineno,
                "%r has %d route decorators; only the first (%s %s) is used"
                % (node.name, len(routes), routes[0]["method"], routes[0]["path"]),
            )
        if routes:
            return routes[0]
        return found[0] if found else None

    # -- pass 2: functions ---------------------------------------------------

    def functions(self, info):
        rel = info["file"]
        out = []
        for node in info["tree"].body:
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                if node.name.startswith("_"):
                    continue
                mark = self.markers(info, rel, node) or {}
                out.append(
                    {
                        "name": node.name,
                        "params": params_of(node.args),
                        "is_async": isinstance(node, ast.AsyncFunctionDef),
                        "is_class": False,
                        "endpoint": mark.get("endpoint"),
                        "http_method": mark.get("method"),
                        "http_path": mark.get("path"),
                    }
                )
            elif isinstance(node, ast.ClassDef):
                mark = self.markers(info, rel, node)
                if mark is None:
                    continue
                if mark.get("method"):
                    self.error(rel, node.lineno, "route decorators apply to functions, not classes (%r)" % node.name)
                for item in node.body:
                    if not isinstance(item, (ast.FunctionDef, ast.AsyncFunctionDef)):
                        continue
                    if item.name.startswith("_"):
                        continue
                    decorators = {tuple(dotted(d) or ()) for d in item.decorator_list}
                    is_static = ("staticmethod",) in decorators
                    if ("property",) in decorators or any(
                        len(d) == 2 and d[1] in ("setter", "getter", "deleter") for d in decorators
                    ):
                        continue
                    out.append(
                        {
                            "name": "%s.%s" % (node.name, item.name),
                            "params": params_of(item.args, skip_first=not is_static),
                            "is_async": isinstance(item, ast.AsyncFunctionDef),
                            "is_class": True,
                            "endpoint": mark.get("endpoint"),
                            "http_method": None,
                            "http_path": None,
                        }
                    )
        return out

    def run(self, files):
        infos = []
        for rel in files:
            info = self.parse_file(rel, report=True)
            if info is not None:
                infos.append(info)
        return {
            "files": [{"file": i["file"], "functions": self.functions(i)} for i in infos],
            "endpoints": self.endpoints,
            "errors": sorted(self.errors, key=lambda e: (e["file"], e["line"])),
        }


def main(argv):
    if len(argv) < 1 or argv[0] in ("-h", "--help"):
        sys.stderr.write(USAGE)
        return 2
    root = os.path.abspath(argv[0])
    if not os.path.isdir(root):
        sys.stderr.write("discover.py: %s is not a directory\n" % argv[0])
        sys.stderr.write(USAGE)
        return 2
    disc = Discovery(root)
    if len(argv) > 1:
        files = []
        for arg in argv[1:]:
            rel = relative(root, arg)
            if rel.startswith("../") or rel == "..":
                sys.stderr.write("discover.py: %s is outside %s\n" % (arg, root))
                sys.stderr.write(USAGE)
                return 2
            if not os.path.isfile(os.path.join(root, rel)):
                disc.error(rel, 0, "file not found")
                continue
            if rel not in files:
                files.append(rel)
    else:
        files = default_files(root)
    report = disc.run(files)
    sys.stdout.write(json.dumps(report, indent=None, separators=(",", ":")))
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
