// HF tokenizers (the Rust library, through its Node bindings: npm "tokenizers") encode throughput
// on a text file: the reference kiln_tokenizer_bench is compared with (docs/PERFORMANCE.md).
//
//   node bench/tokenizer_hf.js TOKENIZER_JSON TEXT_FILE [ITERATIONS]
//
// Same protocol as kiln_tokenizer_bench: each iteration encodes the whole file as one string
// (addSpecialTokens = false); prints the first (cold cache) pass and the median of the rest.
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
  let t0 = process.hrtime.bigint();
  const tok = Tokenizer.fromFile(file);
  let t1 = process.hrtime.bigint();
  const version = require('tokenizers/package.json').version;
  console.log(`HF tokenizers ${version} (Rust, npm bindings) encode benchmark (1 thread) on ${os.cpus()[0].model}`);
  console.log(`tokenizer ${file}, loaded in ${(Number(t1 - t0) / 1e9).toFixed(3)} s`);
  const times = [];
  let numTokens = 0;
  for (let i = 0; i < iterations; i++) {
    const a = process.hrtime.bigint();
    const enc = await tok.encode(text, null, { addSpecialTokens: false });
    const b = process.hrtime.bigint();
    numTokens = enc.getIds().length;
    times.push(Number(b - a) / 1e9);
  }
  const cold = times[0];
  const warm = times.slice(1).sort((x, y) => x - y);
  const median = warm[Math.floor(warm.length / 2)];
  const mb = bytes / 1e6;
  console.log(`text ${textFile}: ${bytes} bytes -> ${numTokens} tokens`);
  console.log(`encode cold (first pass):  ${(mb / cold).toFixed(2).padStart(8)} MB/s  ${(numTokens / cold).toFixed(0).padStart(10)} tokens/s`);
  console.log(`encode warm (median of ${iterations - 1}): ${(mb / median).toFixed(2).padStart(8)} MB/s  ${(numTokens / median).toFixed(0).padStart(10)} tokens/s`);
}

main();
