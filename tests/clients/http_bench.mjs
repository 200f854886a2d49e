// Transport + routing throughput of `kiln serve` without the engine: KILN_BENCH_REQUESTS (default
// 20000) GET /v1/models over KILN_BENCH_CONNECTIONS (default 64) keep-alive connections. Prints
// one JSON line. Run by run_with_server.sh; not a test.
import { readFileSync } from 'node:fs';

const base = process.env.KILN_BASE_URL;
// Server CPU seconds (user + system) from /proc: the figure that does not depend on the client.
const serverCpuS = () => {
  const f = readFileSync(`/proc/${process.env.KILN_SERVER_PID}/stat`, 'utf8').split(') ')[1].split(' ');
  return (Number(f[11]) + Number(f[12])) / 100;
};
const clientCpu0 = process.cpuUsage();
const serverCpu0 = serverCpuS();
const headers = { authorization: `Bearer ${process.env.KILN_API_KEY}` };
const total = Number(process.env.KILN_BENCH_REQUESTS ?? 20000);
const connections = Number(process.env.KILN_BENCH_CONNECTIONS ?? 64);
let next = 0;
const latencies = [];
const t0 = performance.now();
await Promise.all(Array.from({ length: connections }, async () => {
  while (next++ < total) {
    const t = performance.now();
    const res = await fetch(`${base}/v1/models`, { headers });
    if (res.status !== 200) throw new Error(`status ${res.status}`);
    await res.arrayBuffer();
    latencies.push(performance.now() - t);
  }
}));
const wall = (performance.now() - t0) / 1000;
const serverCpu = serverCpuS() - serverCpu0;
const clientCpu = process.cpuUsage(clientCpu0);
latencies.sort((a, b) => a - b);
console.log(JSON.stringify({
  requests: latencies.length, connections, wall_s: wall, requests_per_s: latencies.length / wall,
  p50_ms: latencies[Math.floor(latencies.length * 0.5)],
  p99_ms: latencies[Math.floor(latencies.length * 0.99)],
  server_cpu_us_per_request: (serverCpu * 1e6) / latencies.length,
  client_cpu_us_per_request: (clientCpu.user + clientCpu.system) / latencies.length,
}));
