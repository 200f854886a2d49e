// Soak test (issue 18): mixed requests (plain, streamed and structured completions, embeddings,
// tokenize, a 400) against `kiln serve` from two client libraries at once: Node's fetch (undici)
// here and Python's http.client (soak_client.py, a child process). Each sends KILN_SOAK_REQUESTS
// (default 500) on keep-alive connections and as many one per connection ("Connection: close"),
// KILN_SOAK_CONCURRENCY (default 8) at a time per mode. Every reply must arrive complete: a
// failed connection, a missing reply or a truncated stream fails the test. /health is sampled
// throughout; its worst latency is reported. Prints one JSON line per library and the figures.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const base = process.env.KILN_BASE_URL;
const auth = { authorization: `Bearer ${process.env.KILN_API_KEY}`, 'content-type': 'application/json' };
const total = Number(process.env.KILN_SOAK_REQUESTS ?? 500);
const concurrency = Number(process.env.KILN_SOAK_CONCURRENCY ?? 8);
const kinds = JSON.parse(readFileSync(join(here, 'soak_requests.json'), 'utf8'));

function check(kind, status, text) {
  if (kind.check === 'error400') {
    return status === 400 && JSON.parse(text).error.param === 'top_p' ? null : `${status} ${text}`;
  }
  if (status !== 200) return `status ${status}: ${text.slice(0, 200)}`;
  if (kind.check === 'stream') {
    if (!text.endsWith('data: [DONE]\n\n')) return `stream truncated: ...${text.slice(-120)}`;
    for (const event of text.split('\n\n').slice(0, -2)) JSON.parse(event.slice(6));
    return null;
  }
  const body = JSON.parse(text);
  let ok;
  if (kind.check === 'completion') {
    ok = ['stop', 'length'].includes(body.choices[0].finish_reason);
  } else if (kind.check === 'chat' || kind.check === 'structured') {
    const choice = body.choices[0];
    ok = typeof choice.message.content === 'string';
    if (kind.check === 'structured' && choice.finish_reason === 'stop') {
      ok = ok && typeof JSON.parse(choice.message.content).ok === 'boolean';
    }
  } else if (kind.check === 'embedding') {
    ok = body.data[0].embedding.length > 0;
  } else {
    ok = body.tokens.length > 0;
  }
  return ok ? null : `malformed: ${text.slice(0, 200)}`;
}

const results = { library: 'node fetch', keepalive: { ok: 0, failed: 0 }, oneshot: { ok: 0, failed: 0 }, errors: [] };

async function worker(mode, index, count) {
  for (let i = 0; i < count; ++i) {
    const kind = kinds[(index + i * concurrency) % kinds.length];
    const headers = mode === 'oneshot' ? { ...auth, connection: 'close' } : auth;
    let error;
    try {
      const res = await fetch(base + kind.path, { method: 'POST', headers, body: JSON.stringify(kind.body) });
      error = check(kind, res.status, await res.text());
    } catch (e) {  // a dropped or truncated reply
      error = `${e.name}: ${e.message} ${e.cause?.message ?? ''}`;
    }
    if (error === null) {
      results[mode].ok++;
    } else {
      results[mode].failed++;
      if (results.errors.length < 10) results.errors.push(`${mode} ${kind.path}: ${error}`);
    }
  }
}

// The Python client runs at the same time.
const python = spawn('python3', [join(here, 'soak_client.py')], { stdio: ['ignore', 'pipe', 'inherit'] });
let pythonOut = '';
python.stdout.on('data', (d) => { pythonOut += d; });
const pythonDone = new Promise((resolve) => python.on('close', resolve));

let healthMaxMs = 0, healthSamples = 0, running = true;
const sampler = (async () => {
  while (running) {
    const t0 = performance.now();
    const res = await fetch(`${base}/health`);
    await res.text();
    healthMaxMs = Math.max(healthMaxMs, performance.now() - t0);
    healthSamples++;
    await new Promise((r) => setTimeout(r, 50));
  }
})();

const t0 = performance.now();
const jobs = [];
for (const mode of ['keepalive', 'oneshot']) {
  for (let t = 0; t < concurrency; ++t) {
    jobs.push(worker(mode, t, Math.floor(total / concurrency) + (t < total % concurrency ? 1 : 0)));
  }
}
await Promise.all(jobs);
results.seconds = Number(((performance.now() - t0) / 1000).toFixed(1));
const pythonCode = await pythonDone;
running = false;
await sampler;

console.log(JSON.stringify(results));
console.log(pythonOut.trim());
console.log(JSON.stringify({ requests_per_library_and_mode: total, concurrency, health_max_ms: Math.round(healthMaxMs), health_samples: healthSamples }));
assert.equal(results.keepalive.failed + results.oneshot.failed, 0, results.errors.join('\n'));
assert.equal(results.keepalive.ok + results.oneshot.ok, 2 * total);
assert.equal(pythonCode, 0, `python http.client client failed: ${pythonOut}`);
