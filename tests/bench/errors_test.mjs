// A server that errors, drops connections, hangs or breaks its stream: every failure is counted by
// kind, the tool never hangs, and an unreachable server fails fast with a non-zero exit. Error
// bodies that are not UTF-8 (or are cut inside a character) are quoted, never abort the tool.
import assert from 'node:assert/strict';
import net from 'node:net';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { startFakeServer } from './fake_openai_server.mjs';
import { runBench, readOutputs, tmp, checkPointAgainstLog } from './bench_util.mjs';

const KINDS = ['ok', 'http500', 'drop_before', 'drop_mid', 'hang', 'stream_error'];

async function misbehavingServer() {
  const srv = await startFakeServer({ behavior: (id) => ({ kind: KINDS[id % KINDS.length] }),
                                      firstTokenMs: 5, tokenMs: 1 });
  const out = tmp('errors');
  const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'm',
    '--workload', 'fixed', '--input-len', '6', '--output-len', '6', '--concurrency', '6',
    '--num-requests', '24', '--request-timeout', '1.5', '--out', out], 30);
  await srv.close();
  assert.equal(r.code, 0, `some requests succeeded: ${r.stderr}`);
  assert.ok(r.seconds < 20, `bounded by the request timeout (${r.seconds} s)`);
  const { result, log } = readOutputs(out);
  assert.equal(log.length, 24);
  // Behaviour per distinct request body, in order of arrival at the server.
  const kindOf = new Map();
  for (const q of srv.requests) if (q.body) kindOf.set(q.raw, q.kind);
  const expected = {};
  for (const k of [...kindOf.values()]) expected[k] = (expected[k] ?? 0) + 1;
  const s = result.series[0].points[0].summary;
  assert.equal(s.num_ok, expected.ok);
  assert.deepEqual(s.errors, {
    http_500: expected.http500,
    disconnect: expected.drop_before + expected.drop_mid,
    timeout: expected.hang,
    stream_error: expected.stream_error,
  });
  assert.equal(Object.values(expected).reduce((a, b) => a + b, 0), 24);
  const e500 = log.find((x) => x.error_kind === 'http_500');
  assert.equal(e500.http_status, 500);
  assert.equal(e500.error_message, 'fake overload', 'the OpenAI error message is kept');
  assert.equal(log.find((x) => x.error_kind === 'stream_error').error_message, 'fake engine failure');
  checkPointAgainstLog(result.series[0].points[0], log, result.config.slo_p99_ms);
  assert.match(r.stdout, /errors: .*http_500/);
}

// Regression: error bodies were cut at 200 / 300 bytes inside a multi-byte character (or were not
// UTF-8 at all) and writing requests.jsonl threw (nlohmann type_error.316): the tool aborted.
async function nonUtf8ErrorBodies() {
  const kinds = ['ok', 'http503_utf8', 'http503_ff', 'bad_json_ff', 'bad_chunk_utf8'];
  const srv = await startFakeServer({ behavior: (id) => ({ kind: kinds[id % kinds.length] }),
                                      firstTokenMs: 1, tokenMs: 0 });
  const out = tmp('non-utf8');
  const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'm',
    '--workload', 'fixed', '--input-len', '6', '--output-len', '4', '--concurrency', '2',
    '--num-requests', '10', '--out', out], 30);
  assert.equal(r.code, 0, `no crash, some requests succeeded: ${r.code} ${r.stderr}`);
  const { result, log } = readOutputs(out);
  assert.equal(log.length, 10);
  const kindOf = new Map();
  for (const q of srv.requests) if (q.body) kindOf.set(q.id, q.kind);
  const count = (k) => [...kindOf.values()].filter((x) => x === k).length;
  assert.deepEqual(result.series[0].points[0].summary.errors, {
    http_503: count('http503_utf8') + count('http503_ff'),
    protocol: count('bad_json_ff') + count('bad_chunk_utf8'),
  });
  // Cut on character boundaries (298 of 300 bytes, 199 of 200); a byte that is not UTF-8 is U+FFFD.
  const messages = new Set(log.filter((x) => !x.ok).map((x) => x.error_message));
  const expected = {
    http503_utf8: 'x' + '€'.repeat(99),
    http503_ff: '\ufffd' + 'é'.repeat(149),
    bad_json_ff: 'response is not JSON: \ufffd' + 'é'.repeat(99),
    bad_chunk_utf8: 'stream chunk is not a JSON object: x' + '€'.repeat(66),
  };
  for (const [kind, message] of Object.entries(expected)) {
    if (count(kind) > 0) assert.ok(messages.has(message), `${kind}: ${[...messages].join(' | ')}`);
  }
  assert.equal(log.find((x) => x.error_kind === 'http_503').http_status, 503);
  assert.ok(existsSync(join(out, 'report.html')));
  await srv.close();
  // Only such errors: exit 1 like any run where nothing succeeded, still no crash.
  const all503 = await startFakeServer({
    behavior: (id) => ({ kind: id % 2 ? 'http503_ff' : 'http503_utf8' }) });
  const out2 = tmp('non-utf8-all');
  const r2 = await runBench(['--base-url', `http://127.0.0.1:${all503.port}`, '--model', 'm',
    '--workload', 'fixed', '--input-len', '6', '--output-len', '4', '--concurrency', '2',
    '--num-requests', '4', '--out', out2], 30);
  await all503.close();
  assert.equal(r2.code, 1, `${r2.code} ${r2.stderr}`);
  assert.match(r2.stderr, /no request succeeded/);
  assert.deepEqual(readOutputs(out2).result.series[0].points[0].summary.errors, { http_503: 4 });
}

async function unreachableServer() {
  // A port with nothing listening.
  const probe = net.createServer();
  await new Promise((r) => probe.listen(0, '127.0.0.1', r));
  const port = probe.address().port;
  await new Promise((r) => probe.close(r));
  const out = tmp('unreachable');
  const r = await runBench(['--base-url', `http://127.0.0.1:${port}`, '--model', 'm',
    '--workload', 'fixed', '--concurrency', '2', '--num-requests', '6', '--out', out], 30);
  assert.equal(r.code, 1, 'no request succeeded → exit 1');
  assert.match(r.stderr, /no request succeeded/);
  const { result } = readOutputs(out);
  assert.deepEqual(result.series[0].points[0].summary.errors, { connect: 6 });
}

async function silentServer() {
  // Accepts connections and reads, never answers: timeouts, not a hang.
  const sockets = [];
  const silent = net.createServer((s) => { sockets.push(s); s.on('data', () => {}); });
  await new Promise((r) => silent.listen(0, '127.0.0.1', r));
  const out = tmp('silent');
  const r = await runBench(['--base-url', `http://127.0.0.1:${silent.address().port}`, '--model', 'm',
    '--workload', 'fixed', '--rate', '50', '--num-requests', '5', '--request-timeout', '1',
    '--out', out], 30);
  for (const s of sockets) s.destroy();
  await new Promise((r) => silent.close(r));
  assert.equal(r.code, 1);
  assert.ok(r.seconds < 10, `${r.seconds} s`);
  assert.deepEqual(readOutputs(out).result.series[0].points[0].summary.errors, { timeout: 5 });
}

async function badFlags() {
  for (const args of [['--model', 'm', '--rate', '1', '--concurrency', '2', '--num-requests', '1'],
                      ['--model', 'm', '--rate', '-1', '--num-requests', '1'],
                      ['--rate', '1', '--num-requests', '1'],
                      ['--model', 'm', '--base-url', 'https://x', '--rate', '1', '--num-requests', '1'],
                      ['--model', 'm', '--base-url', 'http://[::1', '--rate', '1', '--num-requests', '1'],
                      ['--model', 'm', '--base-url', 'http://::1:8000', '--rate', '1', '--num-requests', '1'],
                      ['--model', 'm', '--workload', '/nonexistent.jsonl', '--rate', '1', '--num-requests', '1'],
                      ['--model', 'm', '--turns', '5-2', '--rate', '1'],
                      ['--model', 'm', '--concurrency', '2', '--sweep'],
                      ['--model', 'm', '--preset', 'nope', '--rate', '1']]) {
    const r = await runBench(args, 10);
    assert.equal(r.code, 2, `${args.join(' ')} → exit 2, got ${r.code}: ${r.stderr}`);
    assert.match(r.stderr, /kiln bench serve: /);
  }
}

await badFlags();
await misbehavingServer();
await nonUtf8ErrorBodies();
await unreachableServer();
await silentServer();
console.log('errors_test: ok');
