#!/usr/bin/env python3
"""Issue 18 "Stalls" probe: large /tokenize (and over-long chat) bodies against a running
`kiln serve`, while /health is polled on fresh connections. Prints the big requests' times and
/health's p50 / p95 / max latency while they were in flight.

    python3 scripts/tokenize_stall_probe.py PORT [MB_PER_BODY=24] [NUM_BODIES=2] [--chat|--completion]
"""
import http.client
import json
import sys
import threading
import time


def post(port, path, body, out, i):
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    c.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    r = c.getresponse()
    data = r.read()
    out[i] = (r.status, time.monotonic() - t0, data[:200])


def main():
    port = int(sys.argv[1])
    mb = float(sys.argv[2]) if len(sys.argv) > 2 else 24
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    chat = "--chat" in sys.argv
    completion = "--completion" in sys.argv
    words = "Once upon a time there was a little girl named Lily who loved to play. "
    text = (words * int(mb * (1 << 20) / len(words) + 1))[: int(mb * (1 << 20))]
    if chat:
        path = "/v1/chat/completions"
        body = json.dumps({"messages": [{"role": "user", "content": text}], "max_tokens": 4})
    elif completion:
        path = "/v1/completions"
        body = json.dumps({"prompt": text, "max_tokens": 4})
    else:
        path = "/tokenize"
        body = json.dumps({"prompt": text})
    out = [None] * n
    threads = [threading.Thread(target=post, args=(port, path, body, out, i)) for i in range(n)]
    for t in threads:
        t.start()
    lat = []
    slow = []
    start = time.monotonic()
    time.sleep(0.05)
    while any(t.is_alive() for t in threads):
        t0 = time.monotonic()
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
        c.request("GET", "/health")
        r = c.getresponse()
        r.read()
        if any(t.is_alive() for t in threads):
            lat.append((time.monotonic() - t0) * 1000)
            if lat[-1] > 100:
                slow.append(f"{lat[-1]:.0f} ms at {t0 - start:.1f} s")
        time.sleep(0.01)
    for t in threads:
        t.join()
    for status, secs, head in out:
        print(f"{path} {mb:g} MB: HTTP {status} in {secs * 1000:.0f} ms: {head[:120]!r}")
    lat.sort()
    if lat:
        print(f"/health while in flight: {len(lat)} probes, p50 {lat[len(lat) // 2]:.1f} ms, "
              f"p95 {lat[len(lat) * 95 // 100]:.1f} ms, max {lat[-1]:.1f} ms")
        if slow:
            print("over 100 ms: " + ", ".join(slow))


if __name__ == "__main__":
    main()
