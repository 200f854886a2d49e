// The production-table preset's servers (`kiln serve`, CPU backend, stories260K) never outlive the
// tool and a server that dies is noticed:
//  - SIGTERM to the tool stops its server (exit 128 + 15, no `kiln serve` child left after 5 s);
//  - SIGKILL to the tool (no handler runs) takes the server along through its death signal;
//  - a server killed mid-sweep fails its configuration at once ("the server was killed by signal
//    9") instead of being measured as connection errors; with no configuration measured, exit 1.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { kiln, readOutputs, tmp, storiesSetup } from './bench_util.mjs';

const { model, serverArgs, chat: CHAT } = storiesSetup();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Children of `pid` (from /proc/*/stat: the field after the parenthesised name is the state, then
// the parent pid).
function childrenOf(pid) {
  const out = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[1]) === pid) out.push(Number(d));
    } catch { /* gone meanwhile */ }
  }
  return out;
}

// Running (a zombie counts as gone: it has exited, only its parent has not reaped it yet).
function running(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

// Starts the preset (bf16 only, long points) and resolves once its server has answered the
// warm-up: { bench, server (pid), output(), exited (a promise of { code, signal }) }.
async function startPreset(out) {
  const bench = spawn(kiln, ['bench', 'serve', '--preset', 'production-table', '--model', model,
    '--configs', 'bf16', '--server-args', [...serverArgs, '--shutdown-grace-period', '1'].join(' '),
    ...CHAT, '--sweep-start-rate', '4', '--sweep-max-points', '2', '--duration', '30',
    '--slo-p99-ms', '2000', '--out', out], { stdio: ['ignore', 'pipe', 'pipe'] });
  let text = '';
  bench.stdout.on('data', (d) => { text += d; });
  bench.stderr.on('data', (d) => { text += d; });
  const exited = new Promise((r) => bench.on('exit', (code, signal) => r({ code, signal })));
  const t0 = Date.now();
  while (!/warm-up: /.test(text)) {
    assert.ok(Date.now() - t0 < 60000, `the preset did not start measuring in 60 s:\n${text}`);
    assert.equal(bench.exitCode, null, `the preset exited early:\n${text}`);
    await sleep(100);
  }
  const servers = childrenOf(bench.pid).filter((p) =>
    readFileSync(`/proc/${p}/cmdline`, 'utf8').split('\0').includes('serve'));
  assert.equal(servers.length, 1, `one kiln serve child: ${servers}\n${text}`);
  return { bench, server: servers[0], output: () => text, exited };
}

// Runs test(preset) on a started preset; whatever happens, kills what is left of the tool and its
// server (a failing check must not leak them).
async function withPreset(out, test) {
  const p = await startPreset(out);
  try {
    await test(p);
  } finally {
    for (const pid of [p.server, p.bench.pid]) if (running(pid)) process.kill(pid, 'SIGKILL');
  }
}

async function waitGone(pid, ms) {
  const t0 = Date.now();
  while (running(pid) && Date.now() - t0 < ms) await sleep(50);
  return !running(pid);
}

// Regression: SIGTERM to the tool left `kiln serve` running.
async function sigtermStopsTheServer() {
  await withPreset(tmp('preset-sigterm'), async (p) => {
    const t0 = Date.now();
    p.bench.kill('SIGTERM');
    const { code } = await p.exited;
    assert.equal(code, 128 + 15, p.output());
    assert.match(p.output(), /interrupted, stopping the server/);
    assert.ok(await waitGone(p.server, Math.max(0, 5000 - (Date.now() - t0))),
      `kiln serve ${p.server} still runs 5 s after the tool's SIGTERM`);
  });
}

// A tool killed outright (no handler can run): the server's death signal stops it.
async function sigkillTakesTheServerAlong() {
  await withPreset(tmp('preset-sigkill'), async (p) => {
    p.bench.kill('SIGKILL');
    await p.exited;
    assert.ok(await waitGone(p.server, 10000),
      `kiln serve ${p.server} still runs 10 s after the tool was killed`);
  });
}

// Regression: a server that died mid-run was measured as connection errors for the rest of the
// sweep (and the row could even pass).
async function deadServerFailsTheConfiguration() {
  const out = tmp('preset-dead');
  await withPreset(out, async (p) => {
    await sleep(500);
    const t0 = Date.now();
    process.kill(p.server, 'SIGKILL');
    const late = new Promise((r) => setTimeout(() => r({ code: 'still running' }), 20000).unref());
    const { code } = await Promise.race([p.exited, late]);
    const seconds = (Date.now() - t0) / 1000;
    assert.equal(code, 1, p.output());
    assert.ok(seconds < 10, `noticed within a point, not after the 30 s points: ${seconds} s`);
    assert.match(p.output(), /failed: the server was killed by signal 9/);
    assert.match(p.output(), /no configuration was measured/);
    const { result, log } = readOutputs(out);
    assert.equal(result.series.length, 1);
    assert.match(result.series[0].error, /^the server was killed by signal 9/);
    assert.equal(result.series[0].points, undefined, 'no figures for a dead server');
    assert.deepEqual(log, [], 'no request records of a configuration without a result');
  });
}

await sigtermStopsTheServer();
await sigkillTakesTheServerAlong();
await deadServerFailsTheConfiguration();
console.log('preset_lifecycle_test: ok');
