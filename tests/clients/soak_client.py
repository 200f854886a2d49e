#!/usr/bin/env python3
"""Soak client on Python's http.client (run by soak_test.mjs as a child process).

Sends KILN_SOAK_REQUESTS requests on keep-alive connections and as many one per connection,
from KILN_SOAK_CONCURRENCY threads per mode, cycling through soak_requests.json. Every reply must
arrive complete and well-formed; a failed connection, a missing reply or a truncated stream counts
as dropped. Prints one JSON line {"library", "keepalive", "oneshot", "errors"}; exit 1 on any
failure.
"""
import http.client
import json
import os
import sys
import threading
import time
import urllib.parse

BASE = urllib.parse.urlparse(os.environ["KILN_BASE_URL"])
HEADERS = {"Authorization": "Bearer " + os.environ.get("KILN_API_KEY", ""),
           "Content-Type": "application/json"}
TOTAL = int(os.environ.get("KILN_SOAK_REQUESTS", "500"))
CONCURRENCY = int(os.environ.get("KILN_SOAK_CONCURRENCY", "8"))
with open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "soak_requests.json")) as f:
    KINDS = json.load(f)


def check(kind, status, text):
    """Returns an error string, or None when the reply is complete and well-formed."""
    if kind["check"] == "error400":
        body = json.loads(text)
        return None if status == 400 and body["error"]["param"] == "top_p" else f"{status} {text}"
    if status != 200:
        return f"status {status}: {text[:200]}"
    if kind["check"] == "stream":
        if not text.endswith("data: [DONE]\n\n"):
            return "stream truncated: ..." + text[-120:]
        for event in text.split("\n\n")[:-2]:
            json.loads(event[len("data: "):])
        return None
    body = json.loads(text)
    if kind["check"] == "completion":
        ok = body["choices"][0]["finish_reason"] in ("stop", "length")
    elif kind["check"] in ("chat", "structured"):
        choice = body["choices"][0]
        ok = isinstance(choice["message"]["content"], str)
        if kind["check"] == "structured" and choice["finish_reason"] == "stop":
            ok = ok and isinstance(json.loads(choice["message"]["content"])["ok"], bool)
    elif kind["check"] == "embedding":
        ok = len(body["data"][0]["embedding"]) > 0
    else:
        ok = len(body["tokens"]) > 0
    return None if ok else "malformed: " + text[:200]


def worker(mode, index, count, results, lock):
    conn = None
    for i in range(count):
        kind = KINDS[(index + i * CONCURRENCY) % len(KINDS)]
        if conn is None or mode == "oneshot":
            conn = http.client.HTTPConnection(BASE.hostname, BASE.port, timeout=60)
        headers = dict(HEADERS)
        if mode == "oneshot":
            headers["Connection"] = "close"
        try:
            conn.request("POST", kind["path"], body=json.dumps(kind["body"]), headers=headers)
            resp = conn.getresponse()
            text = resp.read().decode()
            error = check(kind, resp.status, text)
        except Exception as e:  # a dropped or truncated reply
            error = f"{type(e).__name__}: {e}"
            conn.close()
            conn = None
        if mode == "oneshot" and conn is not None:
            conn.close()
        with lock:
            if error is None:
                results[mode]["ok"] += 1
            else:
                results[mode]["failed"] += 1
                if len(results["errors"]) < 10:
                    results["errors"].append(f"{mode} {kind['path']}: {error}")


def main():
    results = {"library": "python http.client", "keepalive": {"ok": 0, "failed": 0},
               "oneshot": {"ok": 0, "failed": 0}, "errors": []}
    lock = threading.Lock()
    threads = []
    t0 = time.monotonic()
    for mode in ("keepalive", "oneshot"):
        for t in range(CONCURRENCY):
            count = TOTAL // CONCURRENCY + (1 if t < TOTAL % CONCURRENCY else 0)
            threads.append(threading.Thread(target=worker, args=(mode, t, count, results, lock)))
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    results["seconds"] = round(time.monotonic() - t0, 1)
    print(json.dumps(results))
    failed = results["keepalive"]["failed"] + results["oneshot"]["failed"]
    return 1 if failed or results["keepalive"]["ok"] + results["oneshot"]["ok"] != 2 * TOTAL else 0


if __name__ == "__main__":
    sys.exit(main())
