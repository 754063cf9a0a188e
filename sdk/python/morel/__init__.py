"""Morel SDK for Python functions.

Morel runs the plain functions of your app as serverless functions.  Nothing
in this package is required to do so: every public top-level function of your
app is discovered and deployed as it is.  The SDK lets you say more about
*how* functions are run:

    import morel

    api = morel.Endpoint("api", workers=(1, 4), concurrency=8, timeout_s=30)

    @api.function
    def score(text):
        ...

    @api.get("/items/{item_id}")      # GET /APP/items/42?full=1
    async def get_item(item_id, full=None):
        ...                             # item_id == "42", full == "1"

    @api.post("/items")
    def create(name, request: morel.Request):
        ...                             # request.headers, request.query, ...
        return morel.Response({"name": name}, status=201, headers={"Location": "/items/7"})

    @api.function
    class Model:            # one instance per worker; each public method
        def __init__(self): # becomes a function named "Model.predict", ...
            self.weights = load_weights()

        def predict(self, x):
            ...

A route's path parameters (``{item_id}``) and its query parameters are
passed as named arguments, as strings (a repeated query parameter as a list of
strings), merged with a JSON object body (the body wins over the query).  A
parameter annotated ``morel.Request`` receives the request; returning a
``morel.Response`` sets the answer's status and headers.

An ``Endpoint`` is a named group of functions that share a resource
configuration (worker count, per-worker concurrency, timeout, memory...).
Functions that are not attached to an endpoint run on the app's default
resource; ``@morel.function`` marks such a function explicitly.

The decorators are markers only: they return the decorated object unchanged
and record the endpoint (and HTTP route) on it.  Morel reads them *statically*
when an app is deployed -- your modules are not imported to find them -- so
the endpoint options must be written as literal values.
"""

__all__ = ["Endpoint", "Request", "Response", "function", "call"]
__version__ = "0.1.0"

import functools
import inspect
import json
import os

_HTTP_METHODS = ("GET", "POST", "PUT", "DELETE", "PATCH")


def _mark(obj, endpoint, method=None, path=None):
    if endpoint is not None and inspect.isfunction(obj):
        obj = _routed(obj, endpoint)
    try:
        obj.__morel_endpoint__ = endpoint
        if method is not None:
            obj.__morel_http_method__ = method
            obj.__morel_http_path__ = path
    except (AttributeError, TypeError):
        raise TypeError(
            "morel decorators apply to functions and classes, not %s"
            % type(obj).__name__
        ) from None
    return obj


class Endpoint:
    """A named group of functions sharing one resource configuration.

    ``workers`` is ``(min, max)`` worker processes (``min`` may be 0 to
    scale to zero), ``concurrency`` the number of calls one worker runs at a
    time, ``timeout_s`` the per-call deadline, ``idle_timeout_s`` how long
    an idle worker is kept above ``min``.  ``memory_mb`` and ``cpu`` limit
    each worker, ``env`` adds environment variables, and ``public`` controls
    whether the endpoint's HTTP routes are reachable without credentials.
    """

    def __init__(
        self,
        name,
        workers=(1, 1),
        concurrency=1,
        timeout_s=30,
        idle_timeout_s=300,
        memory_mb=None,
        cpu=None,
        env=None,
        public=True,
    ):
        if not isinstance(name, str) or not name:
            raise ValueError("an endpoint needs a non-empty name")
        if isinstance(workers, int):
            workers = (workers, workers)
        workers = tuple(workers)
        if len(workers) != 2 or not all(isinstance(w, int) for w in workers):
            raise ValueError("workers must be (min, max) integers, got %r" % (workers,))
        if workers[0] < 0 or workers[1] < max(1, workers[0]):
            raise ValueError("workers must satisfy 0 <= min <= max and max >= 1, got %r" % (workers,))
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.name = name
        self.workers = workers
        self.concurrency = concurrency
        self.timeout_s = timeout_s
        self.idle_timeout_s = idle_timeout_s
        self.memory_mb = memory_mb
        self.cpu = cpu
        self.env = dict(env) if env else {}
        self.public = public

    def __repr__(self):
        return "Endpoint(%r, workers=%r, concurrency=%r)" % (
            self.name,
            self.workers,
            self.concurrency,
        )

    def function(self, obj):
        """Run ``obj`` on this endpoint.

        On a class, every public method becomes a function named
        ``"Class.method"``; the class is instantiated once per worker.
        """
        return _mark(obj, self.name)

    def route(self, method, path):
        """Decorator exposing a function as ``method path`` over HTTP."""
        method = method.upper()
        if method not in _HTTP_METHODS:
            raise ValueError("unsupported HTTP method %r" % method)
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError("route paths must be strings starting with '/', got %r" % (path,))

        def decorator(obj):
            return _mark(obj, self.name, method, path)

        return decorator

    def get(self, path):
        return self.route("GET", path)

    def post(self, path):
        return self.route("POST", path)

    def put(self, path):
        return self.route("PUT", path)

    def delete(self, path):
        return self.route("DELETE", path)

    def patch(self, path):
        return self.route("PATCH", path)


class Request:
    """The HTTP request of a call, for a function with a parameter annotated
    ``morel.Request`` (Morel fills it; clients cannot send it as an argument)::

        @api.get("/items/{item_id}")
        def get_item(item_id, request: morel.Request):
            return {"id": item_id, "agent": request.headers.get("user-agent")}

    ``method`` is ``"GET"``, ``"POST"``...; ``path`` the path as the client sent it
    (percent-encoded, with the app's prefix, without the query); ``headers`` a dict
    of lowercase names to values (a repeated header's values joined by ``", "``);
    ``query`` a dict of the decoded query parameters (a repeated one is a list).
    ``header_list`` and ``query_list`` keep every ``(name, value)`` pair in order.
    The body is bound to the function's arguments, as for any call.
    """

    __slots__ = ("method", "path", "headers", "query", "header_list", "query_list")

    def __init__(self, method="GET", path="/", headers=None, query=None):
        self.method = method
        self.path = path
        self.header_list = [(str(k).lower(), str(v)) for k, v in _pairs(headers)]
        self.query_list = [(str(k), str(v)) for k, v in _pairs(query)]
        self.headers = {}
        for k, v in self.header_list:
            self.headers[k] = self.headers[k] + ", " + v if k in self.headers else v
        self.query = {}
        for k, v in self.query_list:
            if k not in self.query:
                self.query[k] = v
            elif isinstance(self.query[k], list):
                self.query[k].append(v)
            else:
                self.query[k] = [self.query[k], v]

    @classmethod
    def _from_wire(cls, wire):
        """From an ``Invoke`` frame's ``request``: ``{"method", "path", "headers":
        [[name, value]...], "query": [[name, value]...]}``."""
        return cls(
            wire.get("method", "GET"),
            wire.get("path", "/"),
            wire.get("headers") or (),
            wire.get("query") or (),
        )

    def __repr__(self):
        return "Request(%r, %r)" % (self.method, self.path)


class Response:
    """An answer with its own status and headers, returned by a function::

        return morel.Response({"id": 7}, status=201, headers={"Location": "/items/7"})
        return morel.Response("<p>hi</p>", content_type="text/html")

    ``body`` is sent as JSON, like any result; a ``str`` body whose content type is
    not JSON is sent as it is.  ``status`` is 200 to 599.  ``headers`` is a dict or a
    list of ``(name, value)`` pairs (repeat a name in the list to send it twice);
    Morel sets ``Content-Length``, ``Date`` and the connection's headers itself, and
    refuses a response that sets them (the call fails with 500).
    """

    __slots__ = ("body", "status", "headers")

    def __init__(self, body=None, status=200, headers=None, content_type=None):
        if type(status) is not int or not 200 <= status <= 599:
            raise ValueError("status must be an integer between 200 and 599, got %r" % (status,))
        self.body = body
        self.status = status
        self.headers = [(k, v) for k, v in _pairs(headers)]
        if content_type is not None:
            self.headers = [(k, v) for k, v in self.headers if k.lower() != "content-type"]
            self.headers.append(("content-type", content_type))

    def __repr__(self):
        return "Response(status=%r, headers=%r)" % (self.status, self.headers)


def _pairs(items):
    if items is None:
        return []
    if isinstance(items, dict):
        return list(items.items())
    return [tuple(p) for p in items]


def function(obj):
    """Mark ``obj`` as a Morel function on the app's default resource."""
    return _mark(obj, None)


# Functions loaded in this worker, by name; filled by Morel's runner after it loads the app.
_local = {}


class RemoteError(Exception):
    """A function called on another resource raised. ``type`` is the remote exception's type
    name (the raised class is also named after it), ``status`` the HTTP status."""

    def __init__(self, message, type_name="Error", status=500):
        super().__init__(message)
        self.type = type_name
        self.status = status


def _remote_error(message, type_name, status):
    # A subclass named after the remote type, so an uncaught error keeps its name upstream.
    name = type_name if isinstance(type_name, str) and type_name.isidentifier() else "RemoteError"
    cls = type(name, (RemoteError,), {})
    return cls(message, type_name, status)


def _remote(name, args, kwargs):
    # Imported here, not at the top: urllib.request pulls in http.client, email and ssl, tens of
    # milliseconds of every worker's cold start, and only calls to another resource need it.
    import urllib.error
    import urllib.parse
    import urllib.request

    base = os.environ.get("MOREL_GATEWAY_URL")
    app = os.environ.get("MOREL_APP")
    if not base or not app:
        raise RuntimeError("morel.call(%r) runs inside Morel workers only (MOREL_GATEWAY_URL and MOREL_APP are not set)" % name)
    if args and kwargs:
        raise TypeError("calls to another resource take positional or keyword arguments, not both")
    version = os.environ.get("MOREL_ENV") or "latest"
    url = "%s/default/%s/%s/call/%s" % (base.rstrip("/"), app, version, urllib.parse.quote(name, safe=""))
    body = json.dumps(kwargs if kwargs else list(args)).encode("utf-8")
    req = urllib.request.Request(url, data=body, method="POST", headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            raw = resp.read()
    except urllib.error.HTTPError as e:
        try:
            payload = json.loads(e.read() or b"{}")
        except ValueError:
            payload = {}
        raise _remote_error(payload.get("error") or "HTTP %d from %s" % (e.code, name), payload.get("type") or "Error", e.code) from None
    return json.loads(raw) if raw else None


def call(name, *args, **kwargs):
    """Call another function of the same app by name.

    Runs in this worker when the function lives in this resource, otherwise through the gateway
    on an instance of its resource (seed 002's transparent execution). A remote failure raises
    a :class:`RemoteError` carrying the remote message and type.
    """
    fn = _local.get(name)
    if fn is not None:
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            import asyncio  # only here: importing it costs every worker's cold start

            result = asyncio.run(result)
        return result
    return _remote(name, args, kwargs)


async def acall(name, *args, **kwargs):
    """The awaitable form of :func:`call`, for ``async def`` functions."""
    fn = _local.get(name)
    if fn is not None:
        result = fn(*args, **kwargs)
        if inspect.iscoroutine(result):
            result = await result
        return result
    import asyncio

    return await asyncio.to_thread(_remote, name, args, kwargs)


def _routed(fn, endpoint):
    """Wraps a function of ``endpoint`` so that calling it from another resource's worker goes
    through the gateway, and runs it directly everywhere else."""

    def remote_here():
        # Loaded in this worker (whatever it declares) → local; else only another resource's
        # worker goes through the gateway.
        if fn.__name__ in _local:
            return False
        current = os.environ.get("MOREL_RESOURCE")
        return current is not None and current != endpoint

    if inspect.iscoroutinefunction(fn):

        @functools.wraps(fn)
        async def async_wrapper(*args, **kwargs):
            if remote_here():
                import asyncio

                return await asyncio.to_thread(_remote, fn.__name__, args, kwargs)
            return await fn(*args, **kwargs)

        return async_wrapper

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if remote_here():
            return _remote(fn.__name__, args, kwargs)
        return fn(*args, **kwargs)

    return wrapper
