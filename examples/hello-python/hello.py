"""The smallest Morel app: every top-level function is callable over HTTP."""

import asyncio


def greet(name="world"):
    print(f"greeting {name}")
    return {"message": f"Hello, {name}!"}


def add(a, b):
    return a + b


async def slow_echo(value, delay=0.1):
    await asyncio.sleep(delay)
    return value


def fail(message="boom"):
    raise ValueError(message)


def sleep_forever():
    import time
    while True:
        time.sleep(1)


def crash():
    import os
    os._exit(3)


def env(name):
    import os
    return os.environ.get(name)
