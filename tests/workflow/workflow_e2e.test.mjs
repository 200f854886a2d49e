// End to end: the example workflows against `kiln serve` with stories260K and a local test HTTP
// service (started here). Checks: the prefill is the start of the reply and the model continues
// it; a model call that returns 500 and one that times out retry, then fall back, with the path
// recorded; JSON nodes return schema-valid objects (ajv); the TTS node's WAV has the duration a
// WAV reader computes; versions publish, diff, roll back and split traffic (30/70 over 1,000
// users within ±5%); a server killed mid-run restarts with that run failed and nothing else lost;
// invalid specs are rejected naming node and field; a Dify DSL file imports and runs.
//
//   node workflow_e2e.test.mjs KILN_BINARY     (exit 77 = skipped: model or binary missing)
import { spawn, spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const root = path.resolve(path.dirname(new URL(import.meta.url).pathname), '../..');
const shared = process.env.KILN_SHARED || path.join(root, '..', 'shared');
const kiln = process.argv[2];
const model = path.join(shared, 'models/stories260K/hf');
const skip = (why) => { console.log(`SKIP: ${why}`); process.exit(77); };
if (!kiln || !fs.existsSync(kiln)) skip(`kiln binary ${kiln} not built`);
if (!fs.existsSync(path.join(model, 'config.json'))) skip(`${model} missing (set KILN_SHARED)`);
const require = createRequire(path.join(root, 'package.json'));
let Ajv;
try { Ajv = require('ajv'); } catch { skip('node_modules/ajv missing (npm install)'); }

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'kiln-wf-'));
const db = path.join(tmp, 'workflows.db');
const apiKey = 'wf-key';

// ---- the local test HTTP service ------------------------------------------------------------
const received = { labels: [], webhook: [] };
const sleepers = new Set();
const service = http.createServer((req, res) => {
  let body = '';
  req.on('data', (d) => { body += d; });
  req.on('end', () => {
    const url = new URL(req.url, 'http://x');
    if (url.pathname.startsWith('/fail500/')) {
      res.writeHead(500, { 'content-type': 'application/json' });
      return res.end('{"error":{"message":"primary model is down"}}');
    }
    if (url.pathname.startsWith('/slow/') || url.pathname === '/sleep') {
      const ms = Number(url.searchParams.get('ms') || 30000);
      const t = setTimeout(() => { sleepers.delete(t); res.end('{"ok":true}'); }, ms);
      sleepers.add(t);
      req.on('close', () => { clearTimeout(t); sleepers.delete(t); });
      return;
    }
    if (url.pathname === '/labels' || url.pathname === '/webhook') {
      received[url.pathname.slice(1)].push(JSON.parse(body));
      res.writeHead(200, { 'content-type': 'application/json' });
      return res.end('{"ok":true}');
    }
    res.writeHead(404);
    res.end();
  });
});
await new Promise((r) => service.listen(0, '127.0.0.1', r));
const sink = `http://127.0.0.1:${service.address().port}`;

// ---- kiln serve -----------------------------------------------------------------------------
async function startServe() {
  const child = spawn(kiln, ['serve', '--model', model, '--port', '0', '--served-model-name', 'stories',
    '--chat-template', path.join(root, 'tests/clients/chat_template.jinja'), '--api-key', apiKey,
    '--workflow-db', db, '--shutdown-grace-period', '5'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  const port = await new Promise((resolve, reject) => {
    const onData = (d) => {
      log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) resolve(Number(m[1]));
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (c) => reject(new Error(`kiln serve exited (${c}):\n${log}`)));
    setTimeout(() => reject(new Error(`kiln serve did not start:\n${log}`)), 60000);
  });
  return { child, base: `http://127.0.0.1:${port}`, log: () => log };
}

let server = await startServe();
async function api(method, p, body) {
  const res = await fetch(server.base + p, {
    method, headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  let json;
  try { json = JSON.parse(text); } catch { json = text; }
  return { status: res.status, json };
}
function flow(args) {
  const r = spawnSync(kiln, ['flow', ...args], { encoding: 'utf8', timeout: 120000, maxBuffer: 256 << 20 });
  return { code: r.status, out: r.stdout, err: r.stderr };
}
function wavDuration(b64) {  // an independent WAV reader: RIFF chunks → fmt + data
  const b = Buffer.from(b64, 'base64');
  assert.equal(b.toString('ascii', 0, 4), 'RIFF');
  assert.equal(b.toString('ascii', 8, 12), 'WAVE');
  let pos = 12, rate = 0, channels = 0, bits = 0;
  while (pos + 8 <= b.length) {
    const id = b.toString('ascii', pos, pos + 4), size = b.readUInt32LE(pos + 4);
    if (id === 'fmt ') { channels = b.readUInt16LE(pos + 10); rate = b.readUInt32LE(pos + 12); bits = b.readUInt16LE(pos + 22); }
    if (id === 'data') return size / (rate * channels * (bits / 8));
    pos += 8 + size + (size & 1);
  }
  throw new Error('no data chunk');
}
const results = [];
async function test(name, fn) {
  const t0 = Date.now();
  await fn();
  results.push(name);
  console.log(`ok - ${name} (${Date.now() - t0} ms)`);
}

try {
  const chatYaml = path.join(root, 'examples/workflows/chat_partner.yml');
  const feedYaml = fs.readFileSync(path.join(root, 'examples/workflows/feed_labelling.yml'), 'utf8');
  // The test's primary model times out after 1 s instead of 20 s.
  const feedFast = feedYaml.replace('timeout_s: 20', 'timeout_s: 1');

  await test('chat partner (CLI): the prefill starts the reply, the model continues it, TTS WAV duration', async () => {
    const r = flow(['run', chatYaml, '--base-url', server.base, '--api-key', apiKey, '--model', 'stories',
      '--input', 'message=Tell me a story', '--input', 'user=ada', '--trace']);
    assert.equal(r.code, 0, r.err);
    const out = JSON.parse(r.out);
    assert.equal(out.status, 'succeeded');
    assert.equal(out.outputs.prefill, 'Once upon a time');
    assert.ok(out.outputs.reply.startsWith('Once upon a time'), out.outputs.reply);
    const reply = out.nodes.find((n) => n.node_id === 'reply');
    assert.equal(reply.path, 'primary');
    assert.ok(reply.output.content.length > 0, 'the model added text after the prefill');
    assert.equal(reply.output.text, reply.output.prefill + reply.output.content);
    assert.equal(reply.input.continue_final_message, true);
    // The continuation is the model's: the same request straight to the server gives the same text.
    const direct = await api('POST', '/v1/chat/completions', { ...reply.input, stream: false, stream_options: undefined });
    assert.equal(direct.status, 200, JSON.stringify(direct.json));
    assert.equal(direct.json.choices[0].message.content, reply.output.content);
    const d = wavDuration(out.outputs.audio_wav_base64);
    assert.ok(Math.abs(d - out.outputs.audio_seconds) < 1e-6, `${d} vs ${out.outputs.audio_seconds}`);
    assert.ok(d > 0.5, `duration ${d}`);
    // In process (--engine: no server), the same greedy reply.
    const local = flow(['run', chatYaml, '--engine', model, '--chat-template',
      path.join(root, 'tests/clients/chat_template.jinja'), '--input', 'message=Tell me a story', '--input', 'user=ada']);
    assert.equal(local.code, 0, local.err);
    assert.equal(JSON.parse(local.out).outputs.reply, out.outputs.reply);
    // The calm style takes the other branch and another prefill.
    const calm = JSON.parse(flow(['run', chatYaml, '--base-url', server.base, '--api-key', apiKey, '--model', 'stories',
      '--input', 'message=Hi', '--input', 'style=calm']).out);
    assert.ok(calm.outputs.reply.startsWith('One quiet evening'), calm.outputs.reply);
  });

  const schema = JSON.parse(JSON.stringify(
    (await api('POST', '/v1/workflows', { yaml: feedFast })).json.draft.nodes[1].response_format.json_schema.schema));
  const validate = new Ajv().compile(schema);

  await test('feed labelling (API): HTTP 500 and a timeout retry, then fall back; JSON by schema', async () => {
    const pub = await api('POST', '/v1/workflows/feed-labelling/publish', { note: 'v1' });
    assert.equal(pub.status, 200, JSON.stringify(pub.json));
    assert.equal(pub.json.version, 1);
    for (const [kind, marker] of [['fail500', 'HTTP 500'], ['slow', 'timed out']]) {
      const r = await api('POST', '/v1/workflows/feed-labelling/runs', {
        inputs: { post: 'The match ended 3-1 after extra time', primary_url: `${sink}/${kind}`, sink }, user: 'u1' });
      assert.equal(r.status, 200, JSON.stringify(r.json));
      assert.equal(r.json.status, 'succeeded', r.json.error);
      const label = r.json.nodes.find((n) => n.node_id === 'label');
      assert.equal(label.path, 'fallback:stories');
      assert.equal(label.attempts.length, 3);
      for (const a of label.attempts.slice(0, 2)) {
        assert.equal(a.variant, 'primary');
        assert.ok(a.error.includes(marker), a.error);
      }
      assert.ok(!label.attempts[2].error);
      assert.ok(validate(r.json.outputs.label), JSON.stringify(validate.errors));
      assert.equal(r.json.outputs.model, 'stories');
      assert.equal(r.json.num_fallbacks, 1);
      // The run log has the same trace.
      const stored = await api('GET', `/v1/runs/${r.json.run_id}`);
      assert.equal(stored.json.status, 'succeeded');
      assert.equal(stored.json.nodes.find((n) => n.node_id === 'label').path, 'fallback:stories');
    }
    assert.equal(received.labels.length, 2);
    assert.ok(validate(received.labels[0].label));
  });

  await test('streaming run: SSE events in order', async () => {
    const res = await fetch(`${server.base}/v1/workflows/feed-labelling/runs`, {
      method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ inputs: { post: 'A dragon visited the town', primary_url: `${sink}/fail500`, sink }, stream: true }),
    });
    const text = await res.text();
    const types = [...text.matchAll(/^event: (\w+)$/gm)].map((m) => m[1]);
    assert.equal(types[0], 'workflow_started');
    assert.equal(types[types.length - 1], 'workflow_finished');
    assert.ok(types.includes('node_started') && types.includes('node_finished'));
    assert.ok(text.trimEnd().endsWith('data: [DONE]'));
  });

  await test('versions: publish, diff, roll back, split 30/70 over 1,000 users, stats', async () => {
    const v2yaml = feedFast.replace('Label the post. Answer in JSON.', 'Label the post briefly. Answer in JSON.');
    assert.equal((await api('POST', '/v1/workflows', { yaml: v2yaml })).status, 201);
    assert.equal((await api('POST', '/v1/workflows/feed-labelling/publish', {})).json.version, 2);
    const diff = await api('GET', '/v1/workflows/feed-labelling/diff?from=1&to=2');
    assert.equal(diff.json.identical, false);
    assert.deepEqual(diff.json.nodes.changed.map((c) => c.id), ['label']);
    assert.deepEqual(diff.json.nodes.changed[0].fields.map((f) => f.field), ['system']);
    assert.equal((await api('GET', '/v1/workflows/feed-labelling')).json.current_version, 2);
    assert.equal((await api('POST', '/v1/workflows/feed-labelling/rollback', { version: 1 })).status, 200);
    assert.equal((await api('GET', '/v1/workflows/feed-labelling')).json.current_version, 1);
    assert.equal((await api('GET', '/v1/workflows/feed-labelling/route?user=x')).json.version, 1);
    const split = await api('POST', '/v1/workflows/feed-labelling/split', { split: [{ version: 1, weight: 30 }, { version: 2, weight: 70 }] });
    assert.equal(split.status, 200, JSON.stringify(split.json));
    let v1 = 0;
    const first = {};
    for (let i = 0; i < 1000; ++i) {
      const r = await api('GET', `/v1/workflows/feed-labelling/route?user=user-${i}`);
      first[i] = r.json.version;
      if (r.json.version === 1) ++v1;
    }
    assert.ok(Math.abs(v1 - 300) <= 50, `version 1 got ${v1} of 1000`);
    for (let i = 0; i < 50; ++i) {  // sticky
      assert.equal((await api('GET', `/v1/workflows/feed-labelling/route?user=user-${i}`)).json.version, first[i]);
    }
    const user = Object.keys(first).find((k) => first[k] === 2);
    const run = await api('POST', '/v1/workflows/feed-labelling/runs', { inputs: { post: 'x', primary_url: `${sink}/fail500`, sink }, user: `user-${user}` });
    assert.equal(run.json.version, 2);
    const versions = await api('GET', '/v1/workflows/feed-labelling/versions');
    assert.deepEqual(versions.json.data.map((v) => v.version), [1, 2]);
    assert.ok(versions.json.data[0].stats.runs >= 3);
    assert.equal(versions.json.data[1].stats.runs, 1);
    assert.ok(versions.json.data[0].stats.runs_with_fallback >= 3);
    assert.equal((await api('POST', '/v1/workflows/feed-labelling/split', { split: [{ version: 9, weight: 1 }] })).status, 400);
  });

  await test('classify and embed nodes on the serving model; parallel branches; draft runs', async () => {
    const yaml = `name: sorter
inputs: {text: {type: string, required: true}}
nodes:
  - {id: start, type: start}
  - {id: fan, type: parallel}
  - {id: kind, type: classify, input: "{{ inputs.text }}", labels: [happy, sad]}
  - {id: vec, type: embed, input: "{{ inputs.text }}"}
  - {id: both, type: join}
  - {id: out, type: end, outputs: {label: "{{ nodes.kind.label }}", probs: "{{ nodes.kind.probs }}", dims: "{{ nodes.vec.dims }}"}}
edges:
  - {from: start, to: fan}
  - {from: fan, to: kind}
  - {from: fan, to: vec}
  - {from: kind, to: both}
  - {from: vec, to: both}
  - {from: both, to: out}
`;
    assert.equal((await api('POST', '/v1/workflows', { yaml })).status, 201);
    // Nothing published: a plain run is refused, a draft run works.
    assert.equal((await api('POST', '/v1/workflows/sorter/runs', { inputs: { text: 'x' } })).status, 400);
    const r = await api('POST', '/v1/workflows/sorter/runs', { inputs: { text: 'The dog was happy' }, version: 'draft' });
    assert.equal(r.json.status, 'succeeded', r.json.error);
    assert.ok(['happy', 'sad'].includes(r.json.outputs.label));
    const p = r.json.outputs.probs;
    assert.ok(Math.abs(p.happy + p.sad - 1) < 1e-4, JSON.stringify(p));
    assert.equal(r.json.outputs.label, p.happy >= p.sad ? 'happy' : 'sad');
    assert.equal(r.json.outputs.dims, 64);  // stories260K's hidden size
  });

  await test('invalid specs are rejected naming node and field', async () => {
    const bad = feedFast.replace('max_tokens: 64', 'max_tokens: -3');
    const r = await api('POST', '/v1/workflows', { yaml: bad });
    assert.equal(r.status, 400);
    assert.match(r.json.error.message, /node 'label': field 'sampling.max_tokens'/);
    const r2 = await api('POST', '/v1/workflows', { yaml: feedFast.replace('{{ nodes.label.json.topic }}', '{{ nodes.nope.topic }}') });
    assert.equal(r2.status, 400);
    assert.match(r2.json.error.message, /node 'alert': field 'text': reads nodes.nope/);
    const f = path.join(tmp, 'bad.yml');
    fs.writeFileSync(f, bad);
    const v = flow(['validate', f]);
    assert.equal(v.code, 2);
    assert.match(v.err, /node 'label': field 'sampling.max_tokens'/);
    const missing = await api('POST', '/v1/workflows/feed-labelling/runs', { inputs: {} });
    assert.equal(missing.status, 400);
    assert.match(missing.json.error.message, /input 'post' is required/);
  });

  await test('a Dify DSL file imports and runs', async () => {
    const out = path.join(tmp, 'dify.yml');
    const imp = flow(['import', path.join(shared, 'workflows/dify_chat_partner.yml'), '--model', 'stories', '--output', out]);
    assert.equal(imp.code, 0, imp.err);
    assert.equal(flow(['validate', out]).code, 0);
    const r = flow(['run', out, '--base-url', server.base, '--api-key', apiKey, '--input', 'query=Hello Mia', '--trace']);
    assert.equal(r.code, 0, r.err);
    const res = JSON.parse(r.out);
    assert.ok(res.outputs.answer.length > 0);
    const llm = res.nodes.find((n) => n.type === 'llm');
    assert.equal(llm.input.messages[0].content, 'You are Mia, a cheerful friend who loves hiking. Reply in two sentences.');
    assert.equal(llm.input.messages.at(-1).content, 'Hello Mia');
    assert.ok(res.nodes.find((n) => n.type === 'tts').output.duration_s > 0);
  });

  await test('a server killed mid-run restarts with that run failed and nothing else lost', async () => {
    const yaml = `name: slowpoke\nnodes:\n  - {id: start, type: start}\n  - {id: wait, type: http, url: "${sink}/sleep?ms=60000"}\n  - {id: out, type: end}\n`;
    assert.equal((await api('POST', '/v1/workflows', { yaml })).status, 201);
    assert.equal((await api('POST', '/v1/workflows/slowpoke/publish', {})).status, 200);
    const before = (await api('GET', '/v1/workflows/feed-labelling/runs?limit=100')).json.data;
    const controller = new AbortController();
    const res = await fetch(`${server.base}/v1/workflows/slowpoke/runs`, {
      method: 'POST', headers: { authorization: `Bearer ${apiKey}`, 'content-type': 'application/json' },
      body: JSON.stringify({ stream: true }), signal: controller.signal,
    });
    const reader = res.body.getReader();
    let text = '';
    while (!text.includes('"node_id":"wait"')) text += new TextDecoder().decode((await reader.read()).value);
    const runId = /"run_id":"([^"]+)"/.exec(text)[1];
    server.child.kill('SIGKILL');
    await new Promise((r) => server.child.on('exit', r));
    controller.abort();
    server = await startServe();
    assert.match(server.log(), /1 run\(s\) interrupted/);
    const run = await api('GET', `/v1/runs/${runId}`);
    assert.equal(run.json.status, 'failed');
    assert.match(run.json.error, /interrupted/);
    const after = (await api('GET', '/v1/workflows/feed-labelling/runs?limit=100')).json.data;
    assert.deepEqual(after, before);
    const versions = await api('GET', '/v1/workflows/feed-labelling/versions');
    assert.deepEqual(versions.json.data.map((v) => v.version), [1, 2]);
    assert.equal((await api('GET', '/v1/workflows/feed-labelling')).json.split.length, 2);
  });
  console.log(`all ${results.length} workflow end-to-end checks passed`);
} finally {
  server.child.kill('SIGTERM');
  for (const t of sleepers) clearTimeout(t);
  service.closeAllConnections();
  service.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}
