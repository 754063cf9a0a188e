"""The Python reference of bench/run: uvicorn (uvloop + httptools, one process) serving a bare
ASGI app that calls a function of a Morel example app directly. POST /call/{function} with a
JSON array of arguments; the answer is the function's JSON result, as Morel's gateway answers it.

    python bench/refs/asgi_ref.py examples/hello-python/hello.py

Prints "listening on 127.0.0.1:PORT" once bound to a free loopback port.
"""

import importlib.util
import inspect
import json
import socket
import sys

import uvicorn


def _load(path):
    spec = importlib.util.spec_from_file_location("bench_target", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


TARGET = _load(sys.argv[1])


async def _answer(send, status, value):
    body = json.dumps(value).encode()
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    more = True
    while more:
        message = await receive()
        body += message.get("body", b"")
        more = message.get("more_body", False)
    name = scope["path"].rsplit("/", 1)[-1]
    fn = getattr(TARGET, name, None)
    if not callable(fn):
        await _answer(send, 404, {"error": f"no function {name}"})
        return
    try:
        args = json.loads(body) if body.strip() else []
        result = fn(*args) if isinstance(args, list) else fn(args)
        if inspect.isawaitable(result):
            result = await result
    except Exception as e:  # the reference answers errors like Morel does: 500 with a message
        await _answer(send, 500, {"error": str(e)})
        return
    await _answer(send, 200, result)


def main():
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    print(f"listening on 127.0.0.1:{sock.getsockname()[1]}", flush=True)
    config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="off",
                            log_level="warning", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])


if __name__ == "__main__":
    main()
