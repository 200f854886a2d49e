// Probe: does a slow grammar compile stall other connections of `kiln serve`?
//
// Starts `kiln serve --http-threads 1` (dummy weights, the Qwen2.5 tokenizer), sends one chat
// request whose JSON schema is large (a cold compile: its grammar is not cached yet) and, while it
// runs, polls GET /health on fresh connections back to back. Prints the structured request's wall
// time and the /health latencies seen meanwhile (p50, max). Before the compile pool, /health waited
// for the whole compile; with it, /health stays at its usual latency.
//
// Usage: node scripts/structured_compile_probe.mjs KILN_BINARY MODEL_DIR TOKENIZER_DIR [NUM_PROPS]
import { startKilnServe } from '../tests/lib/kiln_serve.mjs';
import http from 'node:http';

const [kiln, model, tokenizer, numPropsArg] = process.argv.slice(2);
if (!kiln || !model || !tokenizer) {
  console.error('usage: node structured_compile_probe.mjs KILN_BINARY MODEL_DIR TOKENIZER_DIR [NUM_PROPS]');
  process.exit(2);
}
const numProps = Number(numPropsArg ?? 400);

function request(port, method, path, body) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const req = http.request({ host: '127.0.0.1', port, method, path, agent: false,
      headers: body ? { 'Content-Type': 'application/json' } : {} }, (res) => {
      let data = '';
      res.on('data', (d) => { data += d; });
      res.on('end', () => resolve({ status: res.statusCode, body: data, ms: performance.now() - t0 }));
    });
    req.on('error', reject);
    if (body) req.write(body);
    req.end();
  });
}

// A large schema: groups of 8 required properties of varied kinds (enums, patterns, ranges,
// formats), one object rule per group.
function bigSchema(n) {
  const groups = {};
  for (let g = 0; g * 8 < n; ++g) {
    const properties = {};
    for (let j = 0; j < 8; ++j) {
      const i = g * 8 + j;
      const kind = i % 4;
      properties[`field_${i}`] =
          kind === 0 ? { enum: Array.from({ length: 12 }, (_, k) => `v${i}_${k}`) }
        : kind === 1 ? { type: 'string', pattern: `^[a-z]{2}-[0-9]{${1 + (i % 5)}}$` }
        : kind === 2 ? { type: 'integer', minimum: -i, maximum: 1000 + 7 * i }
        : { type: 'string', format: 'date-time' };
    }
    groups[`group_${g}`] = { type: 'object', properties, required: Object.keys(properties),
      additionalProperties: false };
  }
  return { type: 'object', properties: groups, required: Object.keys(groups),
    additionalProperties: false };
}

const { child, port } = await startKilnServe(kiln, ['--model', model, '--load-format', 'dummy',
  '--tokenizer', tokenizer, '--port', '0', '--http-threads', '1', '--max-model-len', '512']);

try {
  // Warm up: the vocabulary index is built on the first structured request.
  const warm = await request(port, 'POST', '/v1/chat/completions', JSON.stringify({
    messages: [{ role: 'user', content: 'hi' }], max_tokens: 1,
    response_format: { type: 'json_object' } }));
  if (warm.status !== 200) throw new Error(`warm-up: ${warm.status} ${warm.body}`);
  let done = false;
  const big = request(port, 'POST', '/v1/chat/completions', JSON.stringify({
    messages: [{ role: 'user', content: 'hi' }], max_tokens: 1,
    response_format: { type: 'json_schema', json_schema: { name: 'big', schema: bigSchema(numProps) } },
  })).then((r) => { done = true; return r; });
  const health = [];
  while (!done) {
    const h = await request(port, 'GET', '/health');
    if (!done) health.push(h.ms);
  }
  const r = await big;
  if (r.status !== 200) throw new Error(`big schema: ${r.status} ${r.body}`);
  health.sort((a, b) => a - b);
  const p50 = health.length ? health[Math.floor(health.length / 2)] : NaN;
  const max = health.length ? health[health.length - 1] : NaN;
  console.log(`big schema (${numProps} properties, cold compile + 1 token): ${r.ms.toFixed(0)} ms`);
  console.log(`/health during it: ${health.length} answered, p50 ${p50.toFixed(1)} ms, max ${max.toFixed(1)} ms`);
} finally {
  child.kill('SIGTERM');
}
