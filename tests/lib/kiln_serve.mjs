// Starts `kiln serve` on an ephemeral port for JS tests and probes: resolves with the child process,
// the port it printed ("listening on http://127.0.0.1:PORT") and a function returning its log so
// far; rejects when it exits or has not started within timeoutMs.
import { spawn } from 'node:child_process';

export function startKilnServe(binary, args, timeoutMs = 60000) {
  const child = spawn(binary, ['serve', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  let log = '';
  return new Promise((resolve, reject) => {
    const onData = (d) => {
      log += d;
      const m = /listening on http:\/\/127\.0\.0\.1:(\d+)/.exec(log);
      if (m) resolve({ child, port: Number(m[1]), log: () => log });
    };
    child.stdout.on('data', onData);
    child.stderr.on('data', onData);
    child.on('exit', (code) => reject(new Error(`kiln serve exited (${code}) before listening:\n${log}`)));
    setTimeout(() => reject(new Error(`kiln serve did not start in ${timeoutMs / 1000} s:\n${log}`)),
      timeoutMs);
  });
}
