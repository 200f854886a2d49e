// The HTML report renders offline in headless Chromium: after its inline script ran, the DOM holds
// the four charts with the expected numbers of points and bars, and a screenshot shows the series
// and SLO colours inside the chart areas. The report comes from a real short sweep (against the
// test server). Exit 77 (skipped) when chromium is not installed.
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync, mkdtempSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import zlib from 'node:zlib';
import { startFakeServer } from './fake_openai_server.mjs';
import { runBench, readOutputs, tmp } from './bench_util.mjs';

const chromium = ['chromium', 'chromium-browser', 'google-chrome'].find(
  (c) => spawnSync('sh', ['-c', `command -v ${c}`]).status === 0);
if (!chromium) {
  console.log('SKIP: chromium is not installed (scripts/setup.sh installs it)');
  process.exit(77);
}

function runChromium(extra, url) {
  const profile = mkdtempSync(join(tmpdir(), 'kiln-chromium-'));
  return execFileSync(chromium, ['--headless', '--no-sandbox', '--disable-gpu',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
    '--no-first-run', '--disable-dev-shm-usage', `--user-data-dir=${profile}`,
    '--window-size=1200,1400', ...extra, url], { timeout: 45000, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

// Minimal PNG reader: 8-bit RGB / RGBA, not interlaced (what Chromium writes).
function decodePng(buf) {
  assert.equal(buf.toString('latin1', 1, 4), 'PNG');
  let pos = 8, width = 0, height = 0, colorType = 0;
  const idat = [];
  while (pos < buf.length) {
    const len = buf.readUInt32BE(pos), type = buf.toString('latin1', pos + 4, pos + 8);
    const data = buf.subarray(pos + 8, pos + 8 + len);
    if (type === 'IHDR') {
      width = data.readUInt32BE(0); height = data.readUInt32BE(4);
      assert.equal(data[8], 8, 'bit depth 8'); colorType = data[9];
      assert.equal(data[12], 0, 'not interlaced');
    } else if (type === 'IDAT') idat.push(data);
    pos += 12 + len;
  }
  const bpp = colorType === 6 ? 4 : colorType === 2 ? 3 : 0;
  assert.ok(bpp, `colour type ${colorType}`);
  const raw = zlib.inflateSync(Buffer.concat(idat));
  const stride = width * bpp, px = Buffer.alloc(height * stride);
  for (let y = 0; y < height; y++) {
    const f = raw[y * (stride + 1)], src = raw.subarray(y * (stride + 1) + 1, (y + 1) * (stride + 1));
    for (let x = 0; x < stride; x++) {
      const a = x >= bpp ? px[y * stride + x - bpp] : 0, b = y > 0 ? px[(y - 1) * stride + x] : 0;
      const c = x >= bpp && y > 0 ? px[(y - 1) * stride + x - bpp] : 0;
      let v = src[x];
      if (f === 1) v += a; else if (f === 2) v += b; else if (f === 3) v += (a + b) >> 1;
      else if (f === 4) { const p = a + b - c, pa = Math.abs(p - a), pb = Math.abs(p - b), pc = Math.abs(p - c);
        v += pa <= pb && pa <= pc ? a : pb <= pc ? b : c; }
      px[y * stride + x] = v & 255;
    }
  }
  return { width, height, at: (x, y) => [...px.subarray(y * stride + x * bpp, y * stride + x * bpp + 3)] };
}

const srv = await startFakeServer({ firstTokenMs: 10, tokenMs: 1 });
const out = tmp('render');
const r = await runBench(['--base-url', `http://127.0.0.1:${srv.port}`, '--model', 'render-model',
  '--workload', 'fixed', '--input-len', '8', '--output-len', '8', '--sweep', '--sweep-start-rate', '10',
  '--sweep-max-points', '3', '--duration', '0.6', '--out', out]);
await srv.close();
assert.equal(r.code, 0, r.stderr);
const { result } = readOutputs(out);
const npoints = result.series[0].points.length;
assert.equal(npoints, 3, 'every point passes against the fast test server: 3 doublings');
const url = 'file://' + join(out, 'report.html');

// DOM after the inline script ran.
const dom = runChromium(['--dump-dom'], url);
assert.match(dom, /<body[^>]*data-rendered="true"/, 'the script ran to the end');
const svgs = [...dom.matchAll(/<svg [^>]*data-kind="(line|histogram)"[^>]*>/g)].map((m) => m[0]);
assert.equal(svgs.length, 4, 'four charts');
const attr = (s, name) => Number(new RegExp(`${name}="(\\d+)"`).exec(s)?.[1]);
// Latency: E2E P99, P50, P90, TTFT P99 per point; throughput: one line; goodput: goodput + QPS.
assert.deepEqual(svgs.slice(0, 3).map((s) => attr(s, 'data-points')), [4 * npoints, npoints, 2 * npoints]);
assert.ok(attr(svgs[3], 'data-bars') >= 1, 'histogram bars');
assert.equal((dom.match(/class="pt"/g) ?? []).length, 7 * npoints, 'one marker per plotted value');
assert.match(dom, /class="slo"/);
assert.match(dom, /render-model/);
assert.match(dom, /max rate with P99 E2E &lt;= 1500 ms/);

// Pixels: the series colour (#1f77b4) and the SLO line colour (#d62728) were drawn in the charts.
const shot = join(out, 'report.png');
runChromium([`--screenshot=${shot}`, '--hide-scrollbars'], url);
assert.ok(existsSync(shot));
const png = decodePng(readFileSync(shot));
const near = ([r1, g1, b1], [r2, g2, b2]) => Math.abs(r1 - r2) + Math.abs(g1 - g2) + Math.abs(b1 - b2) < 40;
let blue = 0, red = 0, orange = 0, nonWhite = 0;
for (let y = 0; y < png.height; y += 1) for (let x = 0; x < png.width; x += 1) {
  const c = png.at(x, y);
  if (near(c, [31, 119, 180])) blue++;
  if (near(c, [214, 39, 40])) red++;
  if (near(c, [255, 127, 14])) orange++;
  if (c[0] + c[1] + c[2] < 700) nonWhite++;
}
console.log(`screenshot ${png.width}x${png.height}: blue ${blue}, red ${red}, orange ${orange} px`);
assert.ok(blue > 800, `series lines, markers and bars drawn (${blue} px)`);
assert.ok(red > 150, `SLO line drawn (${red} px)`);
assert.ok(orange > 100, `second series drawn (${orange} px)`);
assert.ok(nonWhite > 20000);
console.log('report_render_test: ok');
