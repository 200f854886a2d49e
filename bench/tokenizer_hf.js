// HF tokenizers (the Rust library, through its Node bindings: npm "tokenizers") encode throughput
// on a text file: the reference kiln_tokenizer_bench is compared with (docs/PERFORMANCE.md).
//
//   node bench/tokenizer_hf.js TOKENIZER_JSON TEXT_FILE [ITERATIONS]
//
// Same protocol as kiln_tokenizer_bench: each pass encodes the whole file as one string
// (addSpecialTokens = false); prints cold (fresh tokenizer: empty word cache) and warm (repeated
// passes) medians, wall and CPU time.
'use strict';
const fs = require('fs');
const os = require('os');
const { Tokenizer } = require('tokenizers');

async function main() {
  const [file, textFile, itersArg] = process.argv.slice(2);
  if (!file || !textFile) {
    console.error('usage: node bench/tokenizer_hf.js TOKENIZER_JSON TEXT_FILE [ITERATIONS]');
    process.exit(2);
  }
  const iterations = Math.max(2, parseInt(itersArg || '20', 10));
  const text = fs.readFileSync(textFile, 'utf8');
  const bytes = Buffer.byteLength(text, 'utf8');
  const c0 = process.cpuUsage();
  const t0 = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(file);
  const t1 = process.hrtime.bigint();
  const c1 = process.cpuUsage(c0);
  const version = require('tokenizers/package.json').version;
  console.log(`HF tokenizers ${version} (Rust, npm bindings) encode benchmark (1 thread) on ${os.cpus()[0].model}`);
  console.log(`tokenizer ${file}, loaded in ${(Number(t1 - t0) / 1e9).toFixed(3)} s wall, ${((c1.user + c1.system) / 1e6).toFixed(3)} s CPU`);
  // Cold: a fresh tokenizer each time (empty word cache); warm: one tokenizer, repeated passes.
  // Wall time, and process CPU time (user + system, all threads) which leaves out waiting for a
  // core on a shared machine.
  const mb = bytes / 1e6;
  let numTokens = 0;
  const median = (v) => v.slice().sort((x, y) => x - y)[Math.floor(v.length / 2)];
  async function pass(t, wall, cpu) {
    const c = process.cpuUsage();
    const a = process.hrtime.bigint();
    const enc = await t.encode(text, null, { addSpecialTokens: false });
    const b = process.hrtime.bigint();
    const d = process.cpuUsage(c);
    numTokens = enc.getIds().length;
    wall.push(Number(b - a) / 1e9);
    cpu.push((d.user + d.system) / 1e6);
  }
  const coldWall = [], coldCpu = [], warmWall = [], warmCpu = [];
  const coldRuns = Math.min(iterations, 5);  // each needs a fresh load
  for (let i = 0; i < coldRuns; i++) await pass(Tokenizer.fromFile(file), coldWall, coldCpu);
  await pass(tok, [], []);
  for (let i = 0; i < iterations; i++) await pass(tok, warmWall, warmCpu);
  console.log(`text ${textFile}: ${bytes} bytes -> ${numTokens} tokens`);
  const report = (name, n, wall, cpu) => {
    const w = median(wall), c = median(cpu);
    console.log(`encode ${name}, median of ${n}: ${(mb / w).toFixed(2).padStart(8)} MB/s ${(numTokens / w).toFixed(0).padStart(10)} tokens/s wall | ${(mb / c).toFixed(2).padStart(8)} MB/s CPU time`);
  };
  report('cold (empty word cache)', coldRuns, coldWall, coldCpu);
  report('warm (all words cached)', iterations, warmWall, warmCpu);
}

main();
