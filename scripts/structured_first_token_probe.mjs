// Probe (issue #19): time to the first token of a chat request whose JSON schema the server has
// never seen, against the same request once its grammar is cached.
//
// Starts `kiln serve` (dummy weights, the Qwen2.5 tokenizer), warms it up with a json_object request
// (the vocabulary index is built on the first structured request of a model), then for each round
// sends a new schema with two length-bounded strings (maxLength 80 and 120; property names vary per
// round so that every schema is new) twice, streamed, max_tokens 1, and records the wall time to
// the first streamed content chunk: cold (compile + first token) and cached. Prints per-round
// figures and the medians; exits 1 when the median cold − cached difference exceeds 100 ms.
//
// Usage: node scripts/structured_first_token_probe.mjs KILN_BINARY MODEL_DIR TOKENIZER_DIR [ROUNDS]
import { startKilnServe } from '../tests/lib/kiln_serve.mjs';
import http from 'node:http';

const [kiln, model, tokenizer, roundsArg] = process.argv.slice(2);
if (!kiln || !model || !tokenizer) {
  console.error('usage: node structured_first_token_probe.mjs KILN_BINARY MODEL_DIR TOKENIZER_DIR [ROUNDS]');
  process.exit(2);
}
const rounds = Number(roundsArg ?? 5);

// Resolves with the wall time (ms) to the first streamed chunk that carries content.
function firstToken(port, body) {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    let first = null;
    let text = '';
    const req = http.request({ host: '127.0.0.1', port, method: 'POST', path: '/v1/chat/completions',
      agent: false, headers: { 'Content-Type': 'application/json' } }, (res) => {
      res.on('data', (d) => {
        text += d;
        if (first === null && /"content":"[^"]/.test(text)) first = performance.now() - t0;
      });
      res.on('end', () => {
        if (res.statusCode !== 200 || first === null) {
          reject(new Error(`HTTP ${res.statusCode}: ${text.slice(0, 300)}`));
        } else {
          resolve(first);
        }
      });
    });
    req.on('error', reject);
    req.end(JSON.stringify(body));
  });
}

function schemaFor(round) {
  return {
    type: 'object',
    properties: {
      [`title_${round}`]: { type: 'string', maxLength: 80 },
      [`summary_${round}`]: { type: 'string', maxLength: 120 },
    },
    required: [`title_${round}`, `summary_${round}`],
    additionalProperties: false,
  };
}

const median = (v) => [...v].sort((a, b) => a - b)[Math.floor(v.length / 2)];

const { child, port } = await startKilnServe(kiln, ['--model', model, '--load-format', 'dummy',
  '--tokenizer', tokenizer, '--port', '0', '--max-model-len', '512']);
let failed = false;
try {
  const base = { messages: [{ role: 'user', content: 'Write a title and a summary.' }],
    max_tokens: 1, stream: true, temperature: 0 };
  await firstToken(port, { ...base, response_format: { type: 'json_object' } });
  const cold = [], cached = [];
  for (let r = 0; r < rounds; ++r) {
    const body = { ...base, response_format: { type: 'json_schema',
      json_schema: { name: `two_strings_${r}`, schema: schemaFor(r), strict: true } } };
    cold.push(await firstToken(port, body));
    cached.push(await firstToken(port, body));
    console.log(`round ${r}: new schema ${cold[r].toFixed(1)} ms, cached ${cached[r].toFixed(1)} ms ` +
      `to the first token (wall)`);
  }
  const diff = median(cold) - median(cached);
  console.log(`median over ${rounds}: new schema ${median(cold).toFixed(1)} ms, cached ` +
    `${median(cached).toFixed(1)} ms, difference ${diff.toFixed(1)} ms (goal <= 100 ms)`);
  failed = diff > 100;
} finally {
  child.kill('SIGTERM');
}
process.exit(failed ? 1 : 0);
