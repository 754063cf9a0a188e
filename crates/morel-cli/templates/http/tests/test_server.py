"""Runs without Morel: `python3 -m unittest` in the project directory starts ./server on a free
loopback port and calls it."""

import json
import os
import socket
import subprocess
import sys
import time
import unittest
import urllib.request
from pathlib import Path

SERVER = Path(__file__).resolve().parent.parent / "server"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.port = free_port()
        cls.proc = subprocess.Popen(
            [sys.executable, str(SERVER)],
            env={**os.environ, "PORT": str(cls.port)},
            stdout=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                cls.get("/health")
                return
            except OSError:
                if cls.proc.poll() is not None or time.monotonic() > deadline:
                    cls.proc.kill()
                    raise
                time.sleep(0.05)

    @classmethod
    def tearDownClass(cls):
        cls.proc.terminate()
        cls.proc.wait(timeout=10)

    @classmethod
    def get(cls, path):
        url = f"http://127.0.0.1:{cls.port}{path}"
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()

    def test_health(self):
        self.assertEqual(self.get("/health"), (200, b"ok"))

    def test_hello(self):
        status, body = self.get("/hello?name=Ada")
        self.assertEqual((status, json.loads(body)), (200, {"message": "Hello, Ada!"}))


if __name__ == "__main__":
    unittest.main()
