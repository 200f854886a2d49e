#!/usr/bin/env python3
"""Issue 18's reproductions against a running `kiln serve`, one request per connection, while a
second thread polls GET /health on fresh connections every 10 ms. Prints each reproduction's status
and time, then /health's p50 / p95 / max over the whole run and the server's RSS before and after
(when --pid is given). Exit 1 when a reproduction gets no 4xx/200, the server stops answering, or
/health exceeds --health-limit-ms (default 100).

    python3 scripts/hardening_probe.py PORT [--model NAME] [--pid PID] [--health-limit-ms 100]
"""
import argparse
import http.client
import json
import threading
import time


def request(port, method, path, body=None, timeout=120):
    t0 = time.monotonic()
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    headers = {"Content-Type": "application/json"} if body is not None else {}
    c.request(method, path, body=body, headers=headers)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r.status, (time.monotonic() - t0) * 1000, data


def rss_mb(pid):
    if pid is None:
        return None
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def cases(model):
    deep = 100000
    nest = "[" * deep + "]" * deep
    chat = lambda extra: json.dumps(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, **extra})
    raw_chat = lambda fragment: ('{"model":"%s","max_tokens":2,"messages":[{"role":"user","content":"hi"}],%s}'
                                 % (model, fragment))
    out = [
        ("nested arrays in /v1/embeddings input", "/v1/embeddings", '{"input":' + nest + "}"),
        ("nested arrays in response_format schema", "/v1/chat/completions",
         raw_chat('"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":' + nest + "}}")),
        ("nested arrays in guided_json (string)", "/v1/chat/completions",
         chat({"guided_json": nest})),
        ("nested arrays in messages[0]", "/v1/chat/completions",
         '{"model":"%s","messages":[%s]}' % (model, nest)),
        ("nested arrays in tools", "/v1/chat/completions", raw_chat('"tools":' + nest)),
        ("nested arrays in chat_template_kwargs", "/v1/chat/completions",
         raw_chat('"chat_template_kwargs":{"a":' + nest + "}")),
        ("nested arrays in /tokenize", "/tokenize", '{"prompt":' + nest + "}"),
        ("nested arrays in /v1/classify", "/v1/classify", '{"input":' + nest + "}"),
        ("chat_template 1+1+... x12000", "/v1/chat/completions",
         chat({"chat_template": "{{ " + "+".join(["1"] * 12000) + " }}"})),
        ("chat_template 20000 chained filters", "/v1/chat/completions",
         chat({"chat_template": "{{ 'a'" + "|upper" * 20000 + " }}"})),
        ("chat_template 50000 ~", "/v1/chat/completions",
         chat({"chat_template": "{{ " + "~".join(["'a'"] * 50000) + " }}"})),
        ("chat_template 50000 and", "/v1/chat/completions",
         chat({"chat_template": "{{ " + " and ".join(["1"] * 50000) + " }}"})),
        ("chat_template 50000 [0]", "/v1/chat/completions",
         chat({"chat_template": "{{ x" + "[0]" * 50000 + " }}"})),
        ("chat_template 'x' * 250000000 (1)", "/v1/chat/completions",
         chat({"chat_template": "{{ 'x' * 250000000 }}"})),
        ("chat_template 'x' * 250000000 (2)", "/v1/chat/completions",
         chat({"chat_template": "{{ 'x' * 250000000 }}"})),
        ("10 MB completion prompt", "/v1/completions",
         json.dumps({"model": model, "prompt": "a " * 5000000, "max_tokens": 2})),
        ("return_token_strs null", "/tokenize",
         json.dumps({"model": model, "prompt": "hi", "return_token_strs": None})),
        ("return_token_strs wrong type", "/tokenize",
         json.dumps({"model": model, "prompt": "hi", "return_token_strs": "yes"})),
        ("encoding_format wrong type", "/v1/embeddings",
         json.dumps({"model": model, "input": "hi", "encoding_format": 3})),
        ("regex (a{60}){61}", "/v1/completions",
         json.dumps({"model": model, "prompt": "x", "max_tokens": 2, "guided_regex": "(a{60}){61}"})),
    ]
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("port", type=int)
    ap.add_argument("--model", default="")
    ap.add_argument("--pid", type=int)
    ap.add_argument("--health-limit-ms", type=float, default=100)
    args = ap.parse_args()

    stop = threading.Event()
    lat = []

    def poll():
        while not stop.is_set():
            try:
                status, ms, _ = request(args.port, "GET", "/health", timeout=30)
                lat.append(ms if status == 200 else float("inf"))
            except OSError:
                lat.append(float("inf"))
            time.sleep(0.01)

    rss0 = rss_mb(args.pid)
    poller = threading.Thread(target=poll)
    poller.start()
    failures = 0
    try:
        for name, path, body in cases(args.model):
            status, ms, data = request(args.port, "POST", path, body)
            ok = status == 200 or 400 <= status < 500
            failures += not ok
            msg = data[:90].decode(errors="replace").replace("\n", " ")
            print(f"{'ok ' if ok else 'BAD'} {status} {ms:8.1f} ms  {name}: {msg}")
    finally:
        stop.set()
        poller.join()
    rss1 = rss_mb(args.pid)
    lat.sort()
    worst = lat[-1] if lat else float("inf")
    print(f"/health: {len(lat)} probes, p50 {lat[len(lat) // 2]:.1f} ms, "
          f"p95 {lat[len(lat) * 95 // 100]:.1f} ms, max {worst:.1f} ms")
    if rss0 is not None:
        print(f"RSS: {rss0:.0f} MB before, {rss1:.0f} MB after ({rss1 / rss0:.2f}x)")
    if failures or worst > args.health_limit_ms:
        print(f"FAILED: {failures} reproductions without a 4xx/200; /health max {worst:.1f} ms "
              f"(limit {args.health_limit_ms:g})")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
