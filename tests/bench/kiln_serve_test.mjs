// `kiln bench serve` against `kiln serve` (CPU backend, stories260K): a short run of every workload
// (chat, random, fixed, a JSON-lines file) under both arrival modes (Poisson rate, closed-loop
// concurrency) gives the requested number of requests, all successful, with counts and percentiles
// that match the per-request log; kiln's /metrics figures are read; a short SLO sweep's verdicts
// agree with the percentiles recomputed from the log; the production-table preset starts its own
// servers and reports configurations the server rejects with the server's own message.
import assert from 'node:assert/strict';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { startKilnServe } from '../lib/kiln_serve.mjs';
import { kiln, runBench, readOutputs, tmp, checkPointAgainstLog, percentile, storiesSetup }
  from './bench_util.mjs';

const { model, serverArgs, chat: CHAT } = storiesSetup();

const WORKLOADS = {
  chat: CHAT,
  random: ['--workload', 'random', '--input-len', '20', '--output-len', '12'],
  fixed: ['--workload', 'fixed', '--input-len', '16', '--output-len', '8'],
};

const { child, port } = await startKilnServe(kiln, ['--model', model, '--port', '0',
  '--served-model-name', 's260', ...serverArgs]);
try {
  const base = `http://127.0.0.1:${port}`;
  const file = join(tmp('file'), 'w.jsonl');
  writeFileSync(file, [JSON.stringify({ prompt: 'Once upon a time', max_tokens: 10, ignore_eos: true }),
    JSON.stringify({ messages: [{ role: 'user', content: 'Tell a story' }], max_tokens: 6 })].join('\n'));
  WORKLOADS.file = ['--workload', file];
  for (const [name, wargs] of Object.entries(WORKLOADS)) {
    for (const arrival of [['--rate', '20'], ['--concurrency', '3']]) {
      const out = tmp(`${name}`);
      const n = 12;
      const warm = name === 'chat' ? ['--warmup-requests', '4'] : [];
      const r = await runBench(['--base-url', base, '--model', 's260', ...wargs, ...arrival,
        '--num-requests', String(n), '--seed', '3', ...warm, '--out', out]);
      const what = `${name} ${arrival.join(' ')}`;
      assert.equal(r.code, 0, `${what}: ${r.stderr}`);
      const { result, log } = readOutputs(out);
      assert.equal(log.length, n, what);
      assert.ok(log.every((x) => x.ok), `${what}: ${JSON.stringify(log.find((x) => !x.ok))}`);
      assert.ok(log.every((x) => x.prompt_tokens > 0 && x.output_tokens > 0), `${what}: usage`);
      if (name !== 'chat') {
        // ignore_eos requests generate exactly max_tokens.
        for (const x of log) if (name !== 'file' || x.max_tokens === 10) {
          assert.equal(x.output_tokens, x.max_tokens, what);
        }
      }
      const point = result.series[0].points[0];
      checkPointAgainstLog(point, log, result.config.slo_p99_ms);
      assert.equal(point.server.available, true, `${what}: kiln /metrics read`);
      assert.equal(point.server.server, 'kiln');
      assert.ok(point.server.prefix_cache_query_tokens > 0, `${what}: prefix-cache queries counted`);
      if (name === 'chat') {
        assert.equal(result.series[0].warmup.num_sent, 4, 'warm-up sent, not logged');
        assert.ok(log.some((x) => x.turn > 0), 'multi-turn');
        assert.ok(point.server.prefix_cache_hit_rate > 0, 'shared personas and histories hit the cache');
        assert.ok(log.some((x) => x.cached_tokens > 0), 'usage reports cached tokens');
      }
      console.log(`${what}: ok (${point.summary.qps.toFixed(1)} req/s, p99 e2e ${point.summary.e2e.p99_ms.toFixed(0)} ms)`);
    }
  }

  // A short sweep: every verdict agrees with the log.
  const out = tmp('sweep');
  const slo = 400;
  const r = await runBench(['--base-url', base, '--model', 's260', ...WORKLOADS.random, '--sweep',
    '--sweep-start-rate', '4', '--sweep-max-points', '4', '--duration', '1', '--slo-p99-ms', String(slo),
    '--out', out]);
  assert.equal(r.code, 0, r.stderr);
  const { result, log } = readOutputs(out);
  const series = result.series[0];
  assert.ok(series.points.length >= 2 && series.points.length <= 4);
  series.points.forEach((p, i) => {
    const recs = log.filter((x) => x.point === i);
    checkPointAgainstLog(p, recs, slo);
    const p99 = percentile(recs.filter((x) => x.ok).map((x) => x.e2e_s * 1e3), 99);
    const failed = recs.filter((x) => !x.ok).length / recs.length;
    assert.equal(p.passes, recs.length > 0 && p99 <= slo && failed <= 0.01, `point ${i} verdict`);
  });
  const passing = series.points.filter((p) => p.passes).map((p) => p.target_rate);
  assert.equal(series.sweep.found, passing.length > 0);
  if (passing.length) assert.equal(series.sweep.best_rate, Math.max(...passing));
  assert.match(r.stdout, /max rate with P99 E2E|no rate met/);
} finally {
  child.kill('SIGTERM');
}

// The production-table preset on the CPU backend: bf16 is measured; rows the server rejects carry
// the server's message (the last lines of its log), never a number.
{
  const out = tmp('preset');
  const r = await runBench(['--preset', 'production-table', '--model', model, '--configs',
    'bf16,fp8,fp8-pc-host', '--server-args', serverArgs.join(' '), ...CHAT, '--sweep-start-rate', '4',
    '--sweep-max-points', '2', '--duration', '1', '--slo-p99-ms', '2000', '--out', out], 120);
  assert.equal(r.code, 0, r.stderr + r.stdout);
  const { result } = readOutputs(out);
  assert.deepEqual(result.series.map((s) => s.key), ['bf16', 'fp8', 'fp8-pc-host']);
  const bf16 = result.series[0];
  assert.equal(bf16.error, undefined, `bf16 runs on the CPU backend: ${bf16.error}`);
  assert.ok(bf16.points.length >= 1 && bf16.points[0].summary.num_ok > 0);
  assert.equal(bf16.warmup.num_sent, 4, 'the preset warms up one request per conversation');
  assert.match(bf16.server_command, /--dtype bfloat16 --quantization none --no-enable-prefix-caching --device cpu/);
  for (const s of result.series.slice(1)) {
    assert.match(s.server_command, /--quantization fp8/);
    if (s.error !== undefined) {
      const serverLog = readFileSync(join(out, `server-${s.key}.log`), 'utf8');
      const lastLine = serverLog.trim().split('\n').at(-1);
      assert.ok(s.error.includes(lastLine), `the server's own message: ${s.error}`);
      assert.match(r.stdout, new RegExp(`not available: `));
    } else {
      assert.ok(s.points.length >= 1);
    }
  }
  assert.match(r.stdout, /production table/);
  assert.match(r.stdout, /max QPS, P99 E2E <= 2000 ms/);
  assert.ok(existsSync(join(out, 'report.html')));
}
console.log('kiln_serve_test: ok');
process.exit(0);  // startKilnServe's start-up timer would keep node alive for its full minute
