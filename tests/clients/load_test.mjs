// Bounded loopback load test for `kiln serve` (run by run_with_server.sh):
//  1. KILN_LOAD_CONCURRENCY (default 1000) concurrent streaming completions; every stream must end
//     with [DONE] and carry exactly the greedy reference text.
//  2. KILN_LOAD_DISCONNECTS (default 300) streams cut by the client at random points (some before
//     the first token); afterwards /metrics must show no running requests and no KV blocks in use.
//  3. KILN_LOAD_TOTAL (default 10000) short requests at concurrency 200; the server's RSS after
//     them must stay within KILN_LOAD_RSS_SLACK_MIB (default 24) of its RSS after the first 1000.
// Prints one JSON line with the figures.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';

const base = process.env.KILN_BASE_URL;
const headers = { authorization: `Bearer ${process.env.KILN_API_KEY}`, 'content-type': 'application/json' };
const concurrency = Number(process.env.KILN_LOAD_CONCURRENCY ?? 1000);
const disconnects = Number(process.env.KILN_LOAD_DISCONNECTS ?? 300);
const total = Number(process.env.KILN_LOAD_TOTAL ?? 10000);
const rssSlackMiB = Number(process.env.KILN_LOAD_RSS_SLACK_MIB ?? 24);
const pid = process.env.KILN_SERVER_PID;

function rssMiB() {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  return Number(/VmRSS:\s+(\d+) kB/.exec(status)[1]) / 1024;
}

async function metrics() {
  const text = await (await fetch(`${base}/metrics`)).text();
  const get = (name) => Number(new RegExp(`^${name}\\{[^}]*\\} (\\S+)$`, 'm').exec(text)?.[1]);
  return {
    running: get('kiln_num_requests_running'),
    waiting: get('kiln_num_requests_waiting'),
    kvUsed: get('kiln_kv_blocks_used'),
  };
}

const body = (extra) => JSON.stringify({ model: 'stories', prompt: 'Once upon a time', ...extra });

// One streaming request; returns { text, finish, done, ttftMs }.
async function stream(extra, signal) {
  const t0 = performance.now();
  const res = await fetch(`${base}/v1/completions`, {
    method: 'POST', headers, body: body({ ...extra, stream: true }), signal,
  });
  assert.equal(res.status, 200);
  const decoder = new TextDecoder();
  let buf = '', text = '', finish = null, done = false, ttftMs = null;
  for await (const piece of res.body) {
    buf += decoder.decode(piece, { stream: true });
    let end;
    while ((end = buf.indexOf('\n\n')) >= 0) {
      const event = buf.slice(0, end);
      buf = buf.slice(end + 2);
      if (!event.startsWith('data: ')) continue;
      const data = event.slice(6);
      if (data === '[DONE]') { done = true; continue; }
      const chunk = JSON.parse(data);
      for (const c of chunk.choices) {
        if (c.text && ttftMs === null) ttftMs = performance.now() - t0;
        text += c.text ?? '';
        if (c.finish_reason) finish = c.finish_reason;
      }
    }
  }
  return { text, finish, done, ttftMs };
}

async function waitIdle() {
  for (let i = 0; i < 600; i++) {
    const m = await metrics();
    if (m.running === 0 && m.waiting === 0 && m.kvUsed === 0) return m;
    await new Promise((r) => setTimeout(r, 50));
  }
  return metrics();
}

const pct = (xs, p) => xs.slice().sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
const figures = { concurrency, disconnects, total };

// 1. Concurrent streams.
const params = { max_tokens: 32, temperature: 0 };
const ref = await (await fetch(`${base}/v1/completions`, { method: 'POST', headers, body: body(params) })).json();
const expected = ref.choices[0].text;
let t0 = performance.now();
const results = await Promise.all(Array.from({ length: concurrency }, () => stream(params)));
figures.concurrent_wall_s = (performance.now() - t0) / 1000;
const bad = results.filter((r) => !r.done || r.text !== expected || !r.finish);
assert.equal(bad.length, 0, `${bad.length} of ${concurrency} streams wrong, e.g. ${JSON.stringify(bad[0])}`);
const ttfts = results.map((r) => r.ttftMs);
figures.ttft_p50_ms = pct(ttfts, 0.5);
figures.ttft_p99_ms = pct(ttfts, 0.99);
figures.concurrent_tokens_per_s = (concurrency * ref.usage.completion_tokens) / figures.concurrent_wall_s;

// 2. Random client disconnects.
t0 = performance.now();
let aborted = 0;
await Promise.all(Array.from({ length: disconnects }, async (_, i) => {
  const ctl = new AbortController();
  const timer = setTimeout(() => ctl.abort(), Math.random() * (i % 3 === 0 ? 5 : 400));
  try {
    await stream({ max_tokens: 300, ignore_eos: true, temperature: 1.0 }, ctl.signal);
  } catch (e) {
    aborted += 1;
  } finally {
    clearTimeout(timer);
  }
}));
const idle = await waitIdle();
figures.disconnect_aborted = aborted;
figures.after_disconnects = idle;
figures.disconnect_settle_s = (performance.now() - t0) / 1000;
assert.equal(idle.running, 0, 'requests still running after client disconnects');
assert.equal(idle.kvUsed, 0, 'KV blocks still in use after client disconnects');

// 3. Memory over many requests.
let next = 0;
let rssAfterWarmup = null;
figures.rss_start_mib = rssMiB();
t0 = performance.now();
async function worker() {
  while (next < total) {
    const i = next++;
    if (i === 1000 && rssAfterWarmup === null) rssAfterWarmup = rssMiB();
    if (i % 2 === 0) {
      const r = await stream({ max_tokens: 8, temperature: 0.8, seed: i });
      assert.ok(r.done);
    } else {
      const res = await fetch(`${base}/v1/chat/completions`, {
        method: 'POST', headers,
        body: JSON.stringify({ messages: [{ role: 'user', content: `story ${i}` }], max_tokens: 8 }),
      });
      assert.equal(res.status, 200);
      await res.json();
    }
  }
}
await Promise.all(Array.from({ length: 200 }, worker));
figures.many_wall_s = (performance.now() - t0) / 1000;
figures.requests_per_s = total / figures.many_wall_s;
await waitIdle();
figures.rss_after_1000_mib = rssAfterWarmup ?? figures.rss_start_mib;
figures.rss_end_mib = rssMiB();
figures.rss_growth_mib = figures.rss_end_mib - figures.rss_after_1000_mib;
console.log(JSON.stringify(figures));
assert.ok(figures.rss_growth_mib < rssSlackMiB,
  `RSS grew ${figures.rss_growth_mib.toFixed(1)} MiB between request 1000 and ${total}`);
