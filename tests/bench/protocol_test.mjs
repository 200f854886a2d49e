// `kiln bench serve` against an independent OpenAI-compatible server (fake_openai_server.mjs):
// the requests it sends are the OpenAI protocol (paths, headers, streaming fields, chat history
// grown with the replies the server actually sent), it reads SSE and plain JSON answers, counts
// tokens from usage or from chunks, and its figures match its per-request log.
import assert from 'node:assert/strict';
import { startFakeServer } from './fake_openai_server.mjs';
import { runBench, readOutputs, tmp, checkPointAgainstLog } from './bench_util.mjs';

async function chatClosedLoop() {
  const srv = await startFakeServer({ firstTokenMs: 30, tokenMs: 1 });
  const out = tmp('proto-chat');
  const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}/v1`, '--model', 'fake-model',
    '--api-key', 'sk-test', '--workload', 'chat', '--concurrency', '4', '--num-requests', '24',
    '--conversations', '3', '--personas', '2', '--system-words', '20-30', '--turns', '3-3',
    '--think-time', '0', '--seed', '5', '--out', out]);
  await srv.close();
  assert.equal(r.code, 0, r.stderr);
  const posts = srv.requests.filter((q) => q.method === 'POST');
  assert.equal(posts.length, 24, 'one POST per request, no retries on a healthy server');
  const byMessages = new Map();
  for (const q of posts) {
    assert.equal(q.url, '/v1/chat/completions');
    assert.equal(q.headers.authorization, 'Bearer sk-test');
    assert.match(q.headers['content-type'], /^application\/json/);
    const b = q.body;
    assert.equal(b.model, 'fake-model');
    assert.equal(b.stream, true);
    assert.deepEqual(b.stream_options, { include_usage: true });
    assert.equal(b.ignore_eos, true);
    assert.ok(b.max_tokens >= 24 && b.max_tokens <= 64, `max_tokens ${b.max_tokens}`);
    assert.equal(b.messages[0].role, 'system');
    assert.equal(b.messages.at(-1).role, 'user');
    assert.equal(b.messages.length % 2, 0);
    byMessages.set(JSON.stringify(b.messages), q.id);
  }
  // Every later turn carries the previous turn's messages plus the reply the server sent to it.
  let laterTurns = 0;
  for (const q of posts) {
    const m = q.body.messages;
    if (m.length < 4) continue;
    laterTurns++;
    const previous = JSON.stringify(m.slice(0, -2));
    assert.ok(byMessages.has(previous), 'the history is an earlier request plus its reply');
    assert.equal(m.at(-2).role, 'assistant');
    assert.equal(m.at(-2).content, srv.replies.get(byMessages.get(previous)));
  }
  assert.ok(laterTurns >= 12, `multi-turn conversations (${laterTurns} later turns)`);
  const { result, log } = readOutputs(out);
  assert.equal(log.length, 24);
  for (const rec of log) {
    assert.ok(rec.ok, JSON.stringify(rec));
    assert.equal(rec.output_tokens, rec.max_tokens, 'tokens from usage');
    assert.ok(rec.prompt_tokens > 0);
    assert.ok(rec.ttft_s >= 0.03 - 0.002, `ttft ${rec.ttft_s} includes the server's 30 ms`);
    assert.equal(rec.itl_s.length, rec.max_tokens - 1, 'one ITL per chunk after the first');
    assert.ok(rec.e2e_s >= rec.ttft_s);
  }
  const point = result.series[0].points[0];
  assert.equal(point.concurrency, 4);
  assert.equal(point.server.available, false, 'no kiln /metrics on this server');
  checkPointAgainstLog(point, log, result.config.slo_p99_ms);
  assert.match(r.stdout, /E2E p50\/p90\/p99/);
}

async function completionsPoissonWithoutUsage() {
  const srv = await startFakeServer({ firstTokenMs: 5, tokenMs: 0, usage: false });
  const out = tmp('proto-random');
  const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'm2',
    '--workload', 'random', '--input-len', '20', '--output-len', '10', '--range-ratio', '0.5',
    '--rate', '40', '--num-requests', '30', '--seed', '1', '--out', out]);
  await srv.close();
  assert.equal(r.code, 0, r.stderr);
  const posts = srv.requests.filter((q) => q.method === 'POST');
  assert.equal(posts.length, 30);
  for (const q of posts) {
    assert.equal(q.url, '/v1/completions');
    assert.equal(q.headers.authorization, undefined, 'no key, no header');
    assert.equal(typeof q.body.prompt, 'string');
    const words = q.body.prompt.split(' ').length;
    assert.ok(words >= 10 && words <= 30, `prompt words ${words}`);
    assert.ok(q.body.max_tokens >= 5 && q.body.max_tokens <= 15);
    assert.equal(q.body.ignore_eos, true);
  }
  const { result, log } = readOutputs(out);
  for (const rec of log) {
    assert.equal(rec.prompt_tokens, -1, 'no usage reported');
    assert.equal(rec.output_tokens, rec.max_tokens, 'tokens counted from chunks');
  }
  // Poisson arrivals at 40/s: 30 requests take about 0.75 s of arrivals.
  const span = Math.max(...log.map((x) => x.arrival_s));
  assert.ok(span > 0.2 && span < 3, `arrival span ${span}`);
  checkPointAgainstLog(result.series[0].points[0], log, result.config.slo_p99_ms);
}

async function plainJsonAndFileWorkload() {
  const srv = await startFakeServer({ behavior: () => ({ kind: 'json' }) });
  const dir = tmp('proto-file');
  const file = `${dir}/requests.jsonl`;
  const { writeFileSync } = await import('node:fs');
  writeFileSync(file, [
    JSON.stringify({ prompt: 'hello there', max_tokens: 3 }),
    JSON.stringify({ messages: [{ role: 'user', content: 'hi' }], max_tokens: 4, ignore_eos: true }),
  ].join('\n') + '\n');
  const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'm3',
    '--workload', file, '--concurrency', '1', '--num-requests', '4', '--out', dir]);
  await srv.close();
  assert.equal(r.code, 0, r.stderr);
  const posts = srv.requests.filter((q) => q.method === 'POST');
  assert.deepEqual(posts.map((q) => q.url),
    ['/v1/completions', '/v1/chat/completions', '/v1/completions', '/v1/chat/completions']);
  assert.equal(posts[0].body.prompt, 'hello there');
  assert.equal(posts[0].body.ignore_eos, undefined);
  assert.deepEqual(posts[1].body.messages, [{ role: 'user', content: 'hi' }]);
  const { log } = readOutputs(dir);
  assert.deepEqual(log.map((x) => x.output_tokens), [3, 4, 3, 4]);
  assert.ok(log.every((x) => x.ok && x.ttft_s > 0 && Math.abs(x.ttft_s - x.e2e_s) < 0.005),
    'a non-streaming answer: first token = end');
}

async function hundredsOfConnections() {
  // 300 streams in flight at once from the one io thread; connections are reused afterwards.
  const srv = await startFakeServer({ firstTokenMs: 400, tokenMs: 0 });
  const out = tmp('proto-many');
  const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'm',
    '--workload', 'fixed', '--input-len', '4', '--output-len', '4', '--concurrency', '300',
    '--num-requests', '600', '--out', out]);
  await srv.close();
  assert.equal(r.code, 0, r.stderr);
  const { result, log } = readOutputs(out);
  assert.ok(log.every((x) => x.ok));
  assert.ok(srv.stats.maxOpenSockets >= 290, `open connections at once: ${srv.stats.maxOpenSockets}`);
  assert.ok(srv.stats.connections <= 320, `keep-alive reuse: ${srv.stats.connections} connections for 600 requests`);
  assert.equal(result.series[0].connections_opened, srv.stats.connections);
  checkPointAgainstLog(result.series[0].points[0], log, result.config.slo_p99_ms);
}

async function chatSweepDoesNotStarve() {
  // Regression: the chat workload's conversations outlive a point; their think times once were
  // measured on each point's own clock, so every point after the first found no conversation
  // ready and failed as "starved".
  const srv = await startFakeServer({ firstTokenMs: 5, tokenMs: 0 });
  const out = tmp('proto-chat-sweep');
  const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'm',
    '--workload', 'chat', '--conversations', '16', '--personas', '2', '--system-words', '10-20',
    '--think-time', '0.2', '--warmup-requests', '16', '--sweep', '--sweep-start-rate', '4',
    '--sweep-max-points', '3', '--duration', '1.5', '--out', out]);
  await srv.close();
  assert.equal(r.code, 0, r.stderr);
  const { result, log } = readOutputs(out);
  const points = result.series[0].points;
  assert.equal(points.length, 3);
  for (const p of points) {
    assert.ok(p.num_delayed_arrivals <= 0.1 * p.summary.num_sent, JSON.stringify(p));
    assert.equal(p.passes, true, p.reason);
  }
  assert.equal(result.series[0].warmup.num_sent, 16);
  assert.equal(log.length, points.reduce((a, p) => a + p.summary.num_sent, 0), 'warm-up not logged');
}

async function serverClosesIdleConnections() {
  // The server drops keep-alive connections after 30 ms idle; arrivals 100 ms apart find their
  // pooled connection closed and must retry on a new one, invisibly: no errors, no duplicates.
  const srv = await startFakeServer({ firstTokenMs: 2, tokenMs: 0, closeIdleAfterMs: 30 });
  const out = tmp('proto-keepalive');
  const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'm',
    '--workload', 'fixed', '--input-len', '4', '--output-len', '4', '--concurrency', '1',
    '--num-requests', '3', '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const r2 = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'm',
    '--workload', 'fixed', '--input-len', '4', '--output-len', '4', '--rate', '10',
    '--num-requests', '15', '--seed', '9', '--out', out]);
  await srv.close();
  assert.equal(r2.code, 0, r2.stderr);
  const { result, log } = readOutputs(out);
  assert.ok(log.every((x) => x.ok), JSON.stringify(log.find((x) => !x.ok)));
  assert.equal(srv.requests.filter((q) => q.method === 'POST').length, 3 + 15, 'no duplicates');
  // Each arrival found its pooled connection closed by the server and opened a new one.
  assert.ok(result.series[0].connections_opened >= 10, `${result.series[0].connections_opened}`);
}

async function ipv6Literal() {
  // Regression: "http://[::1]:PORT" was read as host "[::1]:PORT", port 80 (every request failed
  // to resolve), and the Host header needs the brackets.
  const srv = await startFakeServer({ host: '::1', firstTokenMs: 1, tokenMs: 0 });
  const out = tmp('proto-ipv6');
  const r = await runBench(['--base-url', `http://[::1]:${srv.port}/v1`, '--model', 'm',
    '--workload', 'fixed', '--input-len', '4', '--output-len', '4', '--concurrency', '2',
    '--num-requests', '4', '--out', out]);
  await srv.close();
  assert.equal(r.code, 0, r.stderr);
  const posts = srv.requests.filter((q) => q.method === 'POST');
  assert.equal(posts.length, 4);
  for (const q of posts) assert.equal(q.headers.host, `[::1]:${srv.port}`);
  assert.ok(readOutputs(out).log.every((x) => x.ok));
}

await ipv6Literal();
await serverClosesIdleConnections();
await chatSweepDoesNotStarve();
await hundredsOfConnections();
await chatClosedLoop();
await completionsPoissonWithoutUsage();
await plainJsonAndFileWorkload();
console.log('protocol_test: ok');
