// A server that errors, drops connections, hangs or breaks its stream: every failure is counted by
// kind, the tool never hangs, and an unreachable server fails fast with a non-zero exit.
import assert from 'node:assert/strict';
import net from 'node:net';
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
await unreachableServer();
await silentServer();
console.log('errors_test: ok');
