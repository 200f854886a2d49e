// Helpers of the `kiln bench serve` tests: run the tool, read its outputs, recompute its figures
// independently from the per-request log.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import assert from 'node:assert/strict';

export const kiln = process.env.KILN_BINARY;

// The tests that start `kiln serve` (CPU backend, stories260K): the model directory, the server
// flags and a chat workload small enough for the model's 512-token context. Exits 77 (skipped)
// when the model is missing.
export function storiesSetup() {
  const model = join(process.env.KILN_SHARED, 'models/stories260K/hf');
  const template = join(process.env.KILN_SOURCE_DIR, 'tests/clients/chat_template.jinja');
  if (!existsSync(join(model, 'config.json'))) {
    console.log(`SKIP: ${model} missing (set KILN_SHARED)`);
    process.exit(77);
  }
  // A small KV pool: a 1 GiB default takes seconds to allocate on a loaded CI machine.
  const serverArgs = ['--device', 'cpu', '--chat-template', template, '--num-threads', '1',
    '--kv-cache-memory', '16777216'];
  const chat = ['--workload', 'chat', '--conversations', '4', '--personas', '2', '--system-words',
    '10-30', '--user-words', '3-8', '--turns', '2-3', '--reply-tokens', '8-16', '--think-time', '0.05'];
  return { model, serverArgs, chat };
}
export const tmp = (name) => mkdtempSync(join(tmpdir(), `kiln-bench-${name}-`));

// Runs `kiln bench serve ARGS`; resolves { code, stdout, stderr, seconds }. Kills it (and fails)
// after limitS seconds: the tool must never hang.
export function runBench(args, limitS = 60) {
  return new Promise((resolve, reject) => {
    const t0 = Date.now();
    const child = spawn(kiln, ['bench', 'serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => { stdout += d; });
    child.stderr.on('data', (d) => { stderr += d; });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`kiln bench serve hung (> ${limitS} s): ${args.join(' ')}\n${stdout}\n${stderr}`));
    }, limitS * 1000);
    child.on('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, seconds: (Date.now() - t0) / 1000 });
    });
  });
}

export function readOutputs(dir) {
  const result = JSON.parse(readFileSync(join(dir, 'result.json'), 'utf8'));
  const log = readFileSync(join(dir, 'requests.jsonl'), 'utf8').split('\n').filter((l) => l)
    .map((l) => JSON.parse(l));
  return { result, log };
}

// numpy.percentile's default (linear interpolation between closest ranks).
export function percentile(values, p) {
  if (values.length === 0) return 0;
  const v = [...values].sort((a, b) => a - b);
  const rank = (p / 100) * (v.length - 1);
  const lo = Math.floor(rank), hi = Math.min(lo + 1, v.length - 1);
  return v[lo] + (v[hi] - v[lo]) * (rank - lo);
}

function close(a, b, what) {
  assert.ok(Math.abs(a - b) <= 1e-6 * Math.max(1, Math.abs(b)), `${what}: tool ${a} vs log ${b}`);
}

// Recomputes a point's counts and percentiles from its log records and compares them with the
// tool's summary (every figure the tool prints comes from the same records).
export function checkPointAgainstLog(point, records, sloMs) {
  const s = point.summary;
  const ok = records.filter((r) => r.ok);
  assert.equal(s.num_sent, records.length, 'num_sent vs log lines');
  assert.equal(s.num_ok, ok.length, 'num_ok vs log');
  assert.equal(s.num_failed, records.length - ok.length, 'num_failed vs log');
  const errors = {};
  for (const r of records) if (!r.ok) errors[r.error_kind] = (errors[r.error_kind] ?? 0) + 1;
  assert.deepEqual(s.errors, errors, 'errors by kind');
  const series = {
    e2e: ok.map((r) => r.e2e_s * 1e3),
    ttft: ok.filter((r) => r.ttft_s >= 0).map((r) => r.ttft_s * 1e3),
    tpot: ok.filter((r) => r.output_tokens > 1 && r.ttft_s >= 0)
      .map((r) => ((r.e2e_s - r.ttft_s) / (r.output_tokens - 1)) * 1e3),
    itl: ok.flatMap((r) => r.itl_s.map((x) => x * 1e3)),
  };
  for (const [name, values] of Object.entries(series)) {
    assert.equal(s[name].count, values.length, `${name} count`);
    for (const p of [50, 90, 99]) close(s[name][`p${p}_ms`], percentile(values, p), `${name} p${p}`);
  }
  // The window: first send → max(last send, last successful completion).
  const first = Math.min(...records.map((r) => r.start_s));
  const last = Math.max(...records.map((r) => r.start_s), ...ok.map((r) => r.start_s + r.e2e_s));
  close(s.duration_s, last - first, 'duration');
  close(s.qps, ok.length / (last - first), 'qps');
  const out = ok.reduce((a, r) => a + r.output_tokens, 0);
  close(s.output_tokens_per_s, out / (last - first), 'output tokens/s');
  close(s.goodput, ok.filter((r) => r.e2e_s * 1e3 <= sloMs).length / (last - first), 'goodput');
}
