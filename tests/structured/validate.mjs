// Independent validation of constrained-decoding outputs: reads a JSONL file of
// {"name", "schema", "output"} records (output = the raw generated text), parses each output with
// JSON.parse and validates it against its schema with ajv + ajv-formats (not kiln's code).
// Records with "regex" (whole-output match with JS RegExp, "u" flag) or "choices" (exact member)
// instead of "schema" are checked accordingly.
// Draft 2020-12 (Ajv2020), or draft-07 (Ajv) for schemas with a tuple-form "items" array.
// Usage: node tests/structured/validate.mjs outputs.jsonl   → exit 0 iff every record is valid.
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const require = createRequire(join(root, "package.json"));
const Ajv = require("ajv").default;
const Ajv2020 = require("ajv/dist/2020").default;
const addFormats = require("ajv-formats").default;

const file = process.argv[2];
if (!file) {
  console.error("usage: node validate.mjs outputs.jsonl");
  process.exit(2);
}
// multipleOfPrecision: JSON Schema's multipleOf is exact decimal arithmetic, but ajv's default
// check (value / step must be an integer in binary floating point) calls 0.07 no multiple of 0.01;
// ajv's documented option for decimal steps compares the quotient to an integer within 1e-9.
const options = { strict: false, allErrors: false, validateFormats: true, multipleOfPrecision: 9 };
const ajv07 = addFormats(new Ajv(options));
const ajv20 = addFormats(new Ajv2020(options));
const cache = new Map();

let total = 0;
let failures = 0;
for (const line of readFileSync(file, "utf8").split("\n")) {
  if (!line.trim()) continue;
  const rec = JSON.parse(line);
  total++;
  if (rec.regex !== undefined || rec.choices !== undefined) {
    const ok = rec.regex !== undefined
      ? new RegExp("^(?:" + rec.regex + ")$", "u").test(rec.output)
      : rec.choices.includes(rec.output);
    if (!ok) {
      failures++;
      console.log(`FAIL ${rec.name}: does not match: ${JSON.stringify(rec.output)}`);
    }
    continue;
  }
  const key = JSON.stringify(rec.schema);
  let validate = cache.get(key);
  if (!validate) {
    // Draft-07 only for its array form of "items" (tuples); 2020-12 otherwise.
    const ajv = /"items":\[/.test(key) ? ajv07 : ajv20;
    const schema = structuredClone(rec.schema);
    delete schema.$schema;
    validate = ajv.compile(schema);
    cache.set(key, validate);
  }
  let value;
  try {
    value = JSON.parse(rec.output);
  } catch (e) {
    failures++;
    console.log(`FAIL ${rec.name}: not JSON (${e.message}): ${JSON.stringify(rec.output)}`);
    continue;
  }
  if (!validate(value)) {
    failures++;
    console.log(`FAIL ${rec.name}: ${ajv07.errorsText(validate.errors)}: ${JSON.stringify(rec.output)}`);
  }
}
console.log(`validated ${total} outputs: ${total - failures} valid, ${failures} invalid`);
process.exit(failures === 0 && total > 0 ? 0 : 1);
