// End-to-end structured output through `kiln serve` (issue 6, "Done when"): starts the server with
// the dummy-weight Qwen2-architecture model over the real Qwen2.5 vocabulary
// (models/qwen2.5-tiny-dummy, --load-format dummy), then, through HTTP with the official `openai`
// client, temperature 1 and a seed per request:
//   - every schema of tests/structured/schemas/ as chat `response_format: {type: "json_schema",
//     json_schema: {name, schema, strict: true}}`, and a few as completions + `guided_json`;
//   - `{type: "json_object"}`, regexes (`guided_regex`, `structured_outputs.regex`), choices
//     (`guided_choice`, `structured_outputs.choice`) and a GBNF grammar (`guided_grammar`, checked
//     with an equivalent JS RegExp);
//   - a streamed constrained request equals the non-streamed one with the same seed;
//   - bad input: unsupported keyword, malformed schema, invalid regex / grammar / choice → HTTP 400
//     naming the problem, and the server keeps serving.
// Every output is written to $KILN_BUILD_DIR/structured_e2e_outputs.jsonl and checked by the
// independent validator tests/structured/validate.mjs (ajv + ajv-formats; JS RegExp; membership).
// Every request must finish with finish_reason "stop" under max_tokens = MAX_TOKENS: a random-weight
// model never "wants" JSON, so this shows that the grammar (bounded whitespace, EOS allowed exactly
// where the value is complete, termination on completion) ends every output, not the token limit.
//
// Exempt from "stop" (UNBOUNDED below): schemas with an unbounded string (`{"type": "string"}`
// without maxLength/enum/format, an unbounded pattern, any-JSON values and json_object keys). Inside
// such a string every token whose bytes keep the string open is allowed (~151,000 of the 151,665),
// and only ~250 tokens close it validly (`"`, `",`, `"}`, `"\n`, `."`, ...), so a model with flat
// logits closes it with probability ≈ 1/600 per token: ~600 tokens per string on average with a
// geometric tail, several strings per schema. Measured with the dummy model (KILN_E2E_FULL=1,
// 2026-11-26): of these 19 requests 7 stopped after 2, 4, 184, 226, 264, 409 and 541 tokens, the
// other 12 had passed ~550 tokens without finishing when the run was cut at 300 s; i.e. hundreds to
// thousands of tokens per request, far beyond the CI budget of this test on 2 CPU cores (≈ 0.1 s
// CPU per batch-16 decode step of the 151,936-row lm_head). These run with max_tokens =
// UNBOUNDED_MAX_TOKENS and must either stop with a valid output or end with "length" exactly at that
// limit with a string literal of at least MIN_UNBOUNDED_STRING_CHARS characters in the output (the
// budget went to an unbounded string; the cut itself may fall after it, e.g. in a number). KILN_E2E_FULL=1 runs them with MAX_TOKENS and the
// "stop" requirement too (long: for a fast machine).
//
// Usage: node tests/structured/e2e.mjs [KILN_BINARY]   (exit 77 = skipped: a prerequisite is missing)
// Environment: KILN_BUILD_DIR (binary default and output file), KILN_SHARED (tokenizer),
// KILN_E2E_CONCURRENCY (requests in flight, default 16), KILN_E2E_ONLY (a RegExp: run only the cases
// whose names match, e.g. for a KILN_E2E_FULL=1 measurement of the unbounded ones).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const here = dirname(fileURLToPath(import.meta.url));
const root = join(here, '..', '..');
const buildDir = process.env.KILN_BUILD_DIR ?? join(root, 'build');
const kilnBinary = process.argv[2] ?? join(buildDir, 'apps', 'kiln', 'kiln');
const shared = process.env.KILN_SHARED ?? join(root, '..', 'shared');
const MAX_TOKENS = 2000;
const CONCURRENCY = Number(process.env.KILN_E2E_CONCURRENCY ?? 16);
const FULL = process.env.KILN_E2E_FULL === '1';
const UNBOUNDED_MAX_TOKENS = 128;
// Corpus schemas with an unbounded string (see above); json_object cases are unbounded too.
const UNBOUNDED = new Set(['01_person', '06_nested_order', '12_union_types', '21_extra_props_true',
  '22_extra_props_schema', '23_json_any', '31_description_noise', '35_pattern_slug',
  '36_pattern_unanchored', '37_nullable_fields', '48_inventory_map', '55_chat_message']);

// Also detected from the schema itself, so a corpus schema added later (or missed above, like
// 47_geo's optional free "label") cannot make the test flaky: a string without maxLength / enum /
// const / format (a pattern without maxLength counts as unbounded too), free extra keys, or an
// any-JSON subschema.
function hasUnboundedString(node) {
  if (Array.isArray(node)) return node.some(hasUnboundedString);
  if (node === null || typeof node !== 'object') return false;
  const types = Array.isArray(node.type) ? node.type : node.type ? [node.type] : [];
  if (types.includes('string') && !('maxLength' in node) && !('enum' in node) &&
      !('const' in node) && !('format' in node)) return true;
  if (node.additionalProperties === true ||
      (node.additionalProperties && typeof node.additionalProperties === 'object')) return true;
  const keys = Object.keys(node).filter((k) => !['title', 'description', 'default', 'examples',
    '$schema', '$id'].includes(k));
  if (keys.length === 0) return true;  // {}: any JSON value
  return Object.values(node).some(hasUnboundedString);
}

function skip(why) {
  console.log(`SKIP: ${why}`);
  process.exit(77);
}

const require = createRequire(join(root, 'package.json'));
let OpenAI;
try {
  OpenAI = require('openai').default;
  require.resolve('ajv');
  require.resolve('ajv-formats');
} catch {
  skip(`node_modules (openai, ajv, ajv-formats) missing: run npm ci in ${root}`);
}
if (!existsSync(kilnBinary)) skip(`kiln binary ${kilnBinary} not built`);
const tokenizerDir = [join(shared, 'tokenizers', 'qwen2.5'),
  join(root, 'node_modules', '@lenml', 'tokenizer-qwen2_5', 'models')]
  .find((d) => existsSync(join(d, 'tokenizer.json')));
if (!tokenizerDir) skip('no Qwen2.5 tokenizer.json (KILN_SHARED/tokenizers/qwen2.5 or node_modules)');

// ---- the server --------------------------------------------------------------------------------

async function startServer() {
  const apiKey = `e2e-${process.pid}`;
  const args = ['serve', '--model', join(root, 'models', 'qwen2.5-tiny-dummy'), '--load-format',
    'dummy', '--tokenizer', tokenizerDir, '--served-model-name', 'qwen-dummy', '--port', '0',
    '--api-key', apiKey, '--kv-cache-memory', String(256 << 20), '--shutdown-grace-period', '5'];
  const child = spawn(kilnBinary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const onData = (d) => {
      log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`kiln serve exited (${code}) before listening:\n${log}`)));
    setTimeout(() => reject(new Error(`kiln serve did not start in 60 s:\n${log}`)), 60000);
  });
  const exited = new Promise((resolve) => child.on('exit', (code, signal) => resolve({ code, signal })));
  return { child, port, apiKey, exited, log: () => log };
}

// ---- the cases ---------------------------------------------------------------------------------

const schemaDir = join(here, 'schemas');
const schemas = readdirSync(schemaDir).filter((f) => f.endsWith('.json')).sort()
  .map((f) => ({ name: f.replace(/\.json$/, ''), schema: JSON.parse(readFileSync(join(schemaDir, f), 'utf8')) }));

const REGEXES = [
  ['phone', '\\(\\d{3}\\) \\d{3}-\\d{4}'],
  ['email_like', '[a-z]{3,8}\\.[a-z]{2,8}@[a-z]{3,10}\\.(com|org|net)'],
  ['decimal', '-?(0|[1-9][0-9]{0,5})(\\.[0-9]{1,3})?'],
  ['words', '[A-Z][a-z]{1,10}( [a-z]{1,10}){2,5}\\.'],
  ['hex_id', '[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}'],
  ['repeat_group', '(ab|cd)+x'],
  ['unicode_alt', '(été|hiver|printemps|秋)'],
  ['iso_date', '20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])'],
  ['yes_no', 'yes|no'],
  ['csv_row', '[a-z]{1,8}(,[a-z]{1,8}){3}'],
];
const CHOICES = [
  ['sentiment', ['positive', 'negative', 'neutral']],
  ['numbers', ['1', '12', '123', '1234']],
  ['unicode', ['naïve', 'café', '東京', 'Zürich']],
  ['prefixes', ['a', 'ab', 'abc', 'abcd efg']],
];
// GBNF grammar and an equivalent JS regex for the validator.
const GRAMMAR = {
  name: 'gbnf_sum',
  grammar: 'root ::= "(" expr ")"\nexpr ::= num (("+" | "-") num)*\nnum ::= [1-9] [0-9]{0,3}',
  regex: '\\([1-9][0-9]{0,3}([+-][1-9][0-9]{0,3})*\\)',
};

const user = (content) => [{ role: 'user', content }];

function buildCases() {
  const cases = [];
  schemas.forEach(({ name, schema }, i) => {
    cases.push({
      name: `chat/${name}`, api: 'chat', check: { schema }, unbounded: UNBOUNDED.has(name) || hasUnboundedString(schema),
      params: {
        messages: user(`Fill in the ${name} record.`), seed: 1000 + i,
        response_format: { type: 'json_schema', json_schema: { name, schema, strict: true } },
      },
    });
  });
  // Completions + guided_json (as a string, as vLLM clients send it, and as an object).
  schemas.filter((_, i) => i % 11 === 0).forEach(({ name, schema }, i) => {
    cases.push({
      name: `completions/guided_json/${name}`, api: 'completions', check: { schema }, unbounded: UNBOUNDED.has(name) || hasUnboundedString(schema),
      params: { prompt: `${name}:`, seed: 2000 + i, guided_json: i % 2 ? schema : JSON.stringify(schema) },
    });
  });
  for (let i = 0; i < 4; ++i) {
    cases.push({
      name: `${i < 3 ? 'chat' : 'completions'}/json_object/${i}`, api: i < 3 ? 'chat' : 'completions',
      check: { schema: { type: 'object' } }, unbounded: true,
      params: i < 3
        ? { messages: user('Any JSON object.'), seed: 3000 + i, response_format: { type: 'json_object' } }
        : { prompt: 'JSON:', seed: 3000 + i, response_format: { type: 'json_object' } },
    });
  }
  REGEXES.forEach(([name, regex], i) => {
    const chat = i % 2 === 0;
    cases.push({
      name: `${chat ? 'chat/guided_regex' : 'completions/structured_outputs.regex'}/${name}`,
      api: chat ? 'chat' : 'completions', check: { regex },
      params: chat ? { messages: user(name), seed: 4000 + i, guided_regex: regex }
        : { prompt: name, seed: 4000 + i, structured_outputs: { regex } },
    });
  });
  CHOICES.forEach(([name, choices], i) => {
    for (let k = 0; k < 2; ++k) {
      const chat = k === 0;
      cases.push({
        name: `${chat ? 'chat/guided_choice' : 'completions/structured_outputs.choice'}/${name}`,
        api: chat ? 'chat' : 'completions', check: { choices },
        params: chat ? { messages: user(name), seed: 5000 + 2 * i, guided_choice: choices }
          : { prompt: name, seed: 5001 + 2 * i, structured_outputs: { choice: choices } },
      });
    }
  });
  cases.push({
    name: `chat/guided_grammar/${GRAMMAR.name}`, api: 'chat', check: { regex: GRAMMAR.regex },
    params: { messages: user('sum'), seed: 6000, guided_grammar: GRAMMAR.grammar },
  });
  return cases;
}

// Bad input: each must be HTTP 400 whose message contains `expect` (the construct named).
const chatSchema = (schema) => ({ response_format: { type: 'json_schema', json_schema: { name: 'bad', schema, strict: true } } });
const BAD = [
  ['unsupported keyword: not', chatSchema({ type: 'object', properties: { a: { type: 'string', not: { const: 'x' } } } }), "'not'"],
  ['unsupported keyword: patternProperties', chatSchema({ type: 'object', patternProperties: { '^x': { type: 'integer' } } }), 'patternProperties'],
  ['unsupported keyword: if', chatSchema({ if: { type: 'string' }, then: { minLength: 2 } }), "'if'"],
  ['unsupported keyword: uniqueItems true', chatSchema({ type: 'array', items: { type: 'integer' }, uniqueItems: true }), 'uniqueItems'],
  ['unsupported keyword: multipleOf', chatSchema({ type: 'integer', multipleOf: 5 }), 'multipleOf'],
  ['unsupported format', chatSchema({ type: 'string', format: 'hostname' }), 'hostname'],
  ['oneOf with overlapping branches', chatSchema({ oneOf: [{ type: 'integer' }, { type: 'number' }] }), 'oneOf branches 0 and 1'],
  ['malformed: guided_json not JSON', { guided_json: '{"type": "object",' }, 'guided_json'],
  ['malformed: schema not an object', { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: 'object' } } }, 'schema'],
  ['malformed: unknown type', chatSchema({ type: 'strnig' }), 'strnig'],
  ['malformed: dangling $ref', chatSchema({ type: 'object', properties: { a: { $ref: '#/$defs/missing' } } }), 'missing'],
  ['malformed: properties not an object', chatSchema({ type: 'object', properties: 5 }), 'properties'],
  ['malformed: required not an array', chatSchema({ type: 'object', required: 'a' }), 'required'],
  ['malformed: minimum not a number', chatSchema({ type: 'integer', minimum: 'zero' }), 'minimum'],
  ['unsatisfiable: empty enum', chatSchema({ enum: [] }), 'empty language'],
  ['unsatisfiable: minimum > maximum', chatSchema({ type: 'integer', minimum: 5, maximum: 3 }), 'empty language'],
  ['unsatisfiable: minLength > maxLength', chatSchema({ type: 'string', minLength: 5, maxLength: 2 }), 'empty language'],
  ['invalid regex: unbalanced group', { guided_regex: 'a(b' }, 'regex'],
  ['invalid regex: reversed range', { guided_regex: '[z-a]' }, 'range'],
  ['invalid regex: lookahead', { guided_regex: 'a(?=b)' }, 'look'],
  ['invalid regex: backreference', { structured_outputs: { regex: '(a)\\1' } }, 'backreference'],
  ['invalid regex in a schema pattern', chatSchema({ type: 'string', pattern: '(' }), 'pattern'],
  ['invalid grammar: undefined rule', { guided_grammar: 'root ::= item\n' }, 'item'],
  ['invalid choice: empty list', { guided_choice: [] }, 'guided_choice'],
  ['invalid response_format type', { response_format: { type: 'xml' } }, 'response_format'],
];

// ---- running -----------------------------------------------------------------------------------

async function pool(items, limit, fn) {
  const results = new Array(items.length);
  let next = 0;
  async function worker() {
    while (next < items.length) {
      const i = next++;
      results[i] = await fn(items[i], i);
    }
  }
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

async function runCase(client, c) {
  const common = {
    model: 'qwen-dummy', temperature: 1, top_p: 1,
    max_tokens: c.unbounded && !FULL ? UNBOUNDED_MAX_TOKENS : MAX_TOKENS,
  };
  const t0 = performance.now();
  const r = c.api === 'chat'
    ? await client.chat.completions.create({ ...common, ...c.params })
    : await client.completions.create({ ...common, ...c.params });
  const choice = r.choices[0];
  return {
    name: c.name, check: c.check, unbounded: c.unbounded, output: c.api === 'chat' ? choice.message.content : choice.text,
    finish_reason: choice.finish_reason, completion_tokens: r.usage.completion_tokens,
    seconds: (performance.now() - t0) / 1000,
  };
}

// The length in characters of the longest string literal in `text` (a JSON prefix; a string still
// open at the end counts).
function longestString(text) {
  let inside = false, start = 0, longest = 0;
  for (let i = 0; i < text.length; ++i) {
    if (inside && text[i] === '\\') ++i;
    else if (text[i] === '"') {
      if (inside) longest = Math.max(longest, i - start - 1);
      else start = i;
      inside = !inside;
    }
  }
  return inside ? Math.max(longest, text.length - start - 1) : longest;
}
const MIN_UNBOUNDED_STRING_CHARS = 32;

function percentile(sorted, p) {
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

async function main() {
  const server = await startServer();
  const client = new OpenAI({
    baseURL: `http://127.0.0.1:${server.port}/v1`, apiKey: server.apiKey, maxRetries: 0, timeout: 300000,
  });
  const failures = [];
  const fail = (msg) => { failures.push(msg); console.log(`FAIL ${msg}`); };
  const t0 = performance.now();
  try {
    // 1. Bad input → 400 naming the problem (before the corpus: compile errors must not need the
    // vocabulary index to exist, and must leave the server serving).
    for (const [what, params, expect] of BAD) {
      try {
        await client.chat.completions.create({ model: 'qwen-dummy', messages: user('x'), max_tokens: 8, ...params });
        fail(`bad input "${what}": accepted (HTTP 200)`);
      } catch (e) {
        const msg = e?.error?.message ?? e?.message ?? String(e);
        if (e?.status !== 400) fail(`bad input "${what}": HTTP ${e?.status}, want 400 (${msg})`);
        else if (!msg.toLowerCase().includes(expect.toLowerCase())) fail(`bad input "${what}": message does not name '${expect}': ${msg}`);
        else console.log(`ok 400 ${what}: ${msg}`);
      }
    }

    // 2. The corpus, regexes, choices, json_object, grammar.
    const only = process.env.KILN_E2E_ONLY ? new RegExp(process.env.KILN_E2E_ONLY) : null;
    const cases = buildCases().filter((c) => !only || only.test(c.name));
    let done = 0;
    const results = await pool(cases, CONCURRENCY, async (c) => {
      const r = await runCase(client, c).catch((e) => ({
        name: c.name, check: c.check, error: `${e?.status ?? ''} ${e?.error?.message ?? e?.message ?? e}`,
      }));
      console.log(`[${++done}/${cases.length}] ${r.name}: ${r.error ? `error ${r.error}`
        : `${r.finish_reason}, ${r.completion_tokens} tokens, ${r.seconds.toFixed(1)} s`}`);
      return r;
    });
    const records = [];
    for (const r of results) {
      if (r.error) { fail(`${r.name}: request failed: ${r.error}`); continue; }
      if (r.unbounded && !FULL && r.finish_reason === 'length') {
        if (r.completion_tokens !== UNBOUNDED_MAX_TOKENS || longestString(r.output) < MIN_UNBOUNDED_STRING_CHARS) {
          fail(`${r.name}: "length" after ${r.completion_tokens} tokens without a long string: ${JSON.stringify(r.output)}`);
        }
        continue;
      }
      records.push({ name: r.name, ...r.check, output: r.output });
      if (r.finish_reason !== 'stop') {
        fail(`${r.name}: finish_reason ${r.finish_reason} after ${r.completion_tokens} tokens (want stop): ${JSON.stringify(r.output.slice(0, 200))}...`);
      }
    }
    const outFile = join(buildDir, 'structured_e2e_outputs.jsonl');
    writeFileSync(outFile, records.map((r) => JSON.stringify(r)).join('\n') + '\n');
    const v = spawnSync(process.execPath, [join(here, 'validate.mjs'), outFile], { encoding: 'utf8' });
    process.stdout.write(v.stdout + v.stderr);
    if (v.status !== 0) fail(`validate.mjs rejected outputs (see FAIL lines above; ${outFile})`);

    const ok = results.filter((r) => !r.error);
    const tokens = ok.map((r) => r.completion_tokens).sort((a, b) => a - b);
    const byKind = {};
    for (const r of ok) {
      const kind = r.name.split('/').slice(0, -1).join('/');
      const k = (byKind[kind] ??= { n: 0, stop: 0, exempt: 0 });
      k.n++; if (r.finish_reason === 'stop') k.stop++; else if (r.unbounded && !FULL) k.exempt++;
    }
    for (const [kind, k] of Object.entries(byKind)) {
      console.log(`${kind}: ${k.n} requests, ${k.stop} finish_reason stop` +
        (k.exempt ? `, ${k.exempt} unbounded-string cases cut by max_tokens ${UNBOUNDED_MAX_TOKENS}` : ''));
    }
    console.log(`completion tokens over ${tokens.length} requests: p50 ${percentile(tokens, 0.5)}, ` +
      `p90 ${percentile(tokens, 0.9)}, max ${tokens[tokens.length - 1]}, total ${tokens.reduce((a, b) => a + b, 0)}`);
    const longest = [...ok].sort((a, b) => b.completion_tokens - a.completion_tokens).slice(0, 5);
    console.log('longest: ' + longest.map((r) => `${r.name} ${r.completion_tokens}`).join(', '));

    // 3. Same seed, streamed and not: identical constrained output.
    const c = buildCases().find((x) => !x.unbounded);
    const full = await runCase(client, c);
    const stream = await client.chat.completions.create({
      model: 'qwen-dummy', temperature: 1, top_p: 1, max_tokens: MAX_TOKENS, ...c.params, stream: true,
    });
    let text = ''; let finish = null;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta?.content ?? '';
      finish = chunk.choices[0]?.finish_reason ?? finish;
    }
    if (text !== full.output || finish !== full.finish_reason) {
      fail(`stream differs from non-stream for ${c.name}: ${JSON.stringify(text)} vs ${JSON.stringify(full.output)}`);
    }
    const first = results.find((r) => r.name === c.name);
    if (first && !first.error && first.output !== full.output) fail(`${c.name}: same seed gave different outputs`);
  } catch (e) {
    fail(`unexpected: ${e?.stack ?? e}`);
  } finally {
    server.child.kill('SIGTERM');
    const { code, signal } = await server.exited;
    if (code !== 0) fail(`kiln serve exited with ${code ?? signal} after SIGTERM:\n${server.log().slice(-2000)}`);
  }
  console.log(`${failures.length === 0 ? 'PASS' : 'FAIL'}: ${failures.length} failures, ` +
    `${((performance.now() - t0) / 1000).toFixed(1)} s`);
  process.exit(failures.length === 0 ? 0 : 1);
}

main();
