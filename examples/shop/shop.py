"""A manifest-driven app: three resources, each scaled on its own, calling each other.

- `api` serves HTTP routes (POST /shop/checkout, GET /shop/status);
- `jobs` runs plain functions (resize);
- `models` runs a class, one instance per worker ("Model.predict").
Calling `resize(...)` from an `api` worker runs it on a `jobs` instance through the gateway.
"""

import os

import morel

api = morel.Endpoint("api", workers=(1, 2), concurrency=8)
jobs = morel.Endpoint("jobs", workers=(0, 3), idle_timeout_s=60)
models = morel.Endpoint("models", workers=(1, 1))


@api.post("/checkout")
def checkout(items):
    total = sum(item["price"] * item["qty"] for item in items)
    thumbnail = resize(64, 48)
    score = morel.call("Model.predict", total)
    return {"total": total, "thumbnail": thumbnail, "score": score, "served_by": os.environ.get("MOREL_RESOURCE")}


@api.get("/status")
def status():
    return {"ok": True}


@api.post("/fail")
def fail_remotely():
    return explode("from api")


@jobs.function
def resize(w, h):
    return {"w": w, "h": h, "served_by": os.environ.get("MOREL_RESOURCE")}


@jobs.function
def explode(why):
    raise ValueError("exploded " + why)


@models.function
class Model:
    def __init__(self):
        self.calls = 0

    def predict(self, x):
        self.calls += 1
        return {"score": round(x * 0.1, 2), "calls": self.calls, "served_by": os.environ.get("MOREL_RESOURCE")}
