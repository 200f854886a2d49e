// Writes HF tokenizers' (Rust, npm "tokenizers") outputs for random texts, for
// kiln_tokenizer_parity to compare against kiln: a differential fuzz of encode and decode.
//
//   node bench/tokenizer_hf_parity.js TOKENIZER_JSON OUT.json [NUM_TEXTS] [SEED]
//
// Texts are random concatenations of atoms chosen to hit the hard parts: contractions, digit
// runs, every kind of whitespace, scripts with and without NFC changes, emoji, special-token
// text, lstrip/rstrip and single_word neighbourhoods. OUT.json: [{text, ids, decoded,
// decoded_skip}] with add_special_tokens = true.
'use strict';
const fs = require('fs');
const { Tokenizer } = require('tokenizers');

const ATOMS = ['a', 'B', 'the', ' ', '  ', '   ', '\n', '\n\n', '\r\n', '\r', '\t', '\v', '\f',
  "'s", "'S", "'ll", "'RE", "'", '1', '12', '1234567', '3.14', 'é', 'e\u0301', '中', '文字',
  '日本語', '한국어', 'Привет', 'مرحبا', '😀', '🤖🤖', '\u00a0', '\u0085', '\u3000', '\u2028',
  '<|im_start|>', '<|im_end|>', '<|endoftext|>', '<s>', '</s>', '<tool>', ' <tool> ', 'word', '_',
  '(', ')', '...', '!!', '?', '-', '—', '«', '»', '$', '€', '#', '@', 'http://x.y/z?q=1',
  '<|eot_id|>', '<|start_header_id|>', '<think>', '</think>', '\u200b', 'ﬁ', 'Å', '\ufeff', '𝔘',
  '\x00', '\x7f', 'ǅ', 'ß', 'İ', 'ﬀ', '\u0345', 'Ⅻ', '²', '½', '가', '\u1100\u1161', 'ㄱ', 'ｶﾞ',
  'ガ', 'Ω', 'Ω', 'ⓐ', 'x\u0308', '\u0f73', '\u0344', '\u200d'];

function mulberry32(seed) {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function main() {
  const [file, out, numArg, seedArg] = process.argv.slice(2);
  if (!file || !out) {
    console.error('usage: node bench/tokenizer_hf_parity.js TOKENIZER_JSON OUT.json [NUM_TEXTS] [SEED]');
    process.exit(2);
  }
  const num = parseInt(numArg || '5000', 10);
  const random = mulberry32(parseInt(seedArg || '1', 10));
  const tok = Tokenizer.fromFile(file);
  const cases = [];
  for (let i = 0; i < num; i++) {
    let text = '';
    for (let k = 1 + Math.floor(random() * 20); k > 0; k--) text += ATOMS[Math.floor(random() * ATOMS.length)];
    const ids = (await tok.encode(text, null, { addSpecialTokens: true })).getIds();
    cases.push({ text, ids, decoded: await tok.decode(ids, false), decoded_skip: await tok.decode(ids, true) });
  }
  fs.writeFileSync(out, JSON.stringify(cases));
  console.log(`wrote ${num} HF tokenizers cases for ${file} to ${out}`);
}

main();
