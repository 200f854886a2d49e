// Client overhead of `kiln bench serve`: the CPU time its one io thread spends per request and per
// streamed chunk, against the trivial test server of tests/bench (no delays, N tokens per reply),
// so that the client is known not to be the bottleneck of a measurement. The server runs in this
// node process; the client's user+sys CPU comes from /usr/bin/time.
//
//   node bench/serve_client_overhead.mjs build/apps/kiln/kiln [requests] [concurrency]

import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startFakeServer } from '../tests/bench/fake_openai_server.mjs';

const [kiln, requests = '4000', concurrency = '64'] = process.argv.slice(2);
for (const outputLen of [1, 16, 64]) {
  const srv = await startFakeServer({ firstTokenMs: 0, tokenMs: 0, usage: true });
  const out = mkdtempSync(join(tmpdir(), 'kiln-overhead-'));
  // Runs the client in a child while this process serves: spawnSync would block the server.
  const { spawn } = await import('node:child_process');
  const child = spawn('/usr/bin/time', ['-f', '%U %S %e', kiln, 'bench', 'serve', '--base-url',
    `http://127.0.0.1:${srv.port}`, '--model', 'm', '--workload', 'fixed', '--input-len', '8',
    '--output-len', String(outputLen), '--concurrency', concurrency, '--num-requests', requests,
    '--no-progress', '--no-metrics', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.on('data', (d) => { stderr += d; });
  await new Promise((r) => child.on('exit', r));
  await srv.close();
  const [user, sys, wall] = stderr.trim().split('\n').at(-1).split(' ').map(Number);
  const s = JSON.parse(readFileSync(join(out, 'result.json'), 'utf8')).series[0].points[0].summary;
  const cpu = user + sys;
  console.log(JSON.stringify({ output_tokens: outputLen, requests: s.num_sent, ok: s.num_ok,
    concurrency: Number(concurrency), achieved_qps: +s.qps.toFixed(0), wall_s: wall,
    client_cpu_s: +cpu.toFixed(2), client_cpu_us_per_request: +(1e6 * cpu / s.num_sent).toFixed(0),
    client_cpu_us_per_chunk: +(1e6 * cpu / (s.num_sent * outputLen)).toFixed(1),
    max_rate_one_core: +(s.num_sent / cpu).toFixed(0) }));
}
