// SIGTERM drains `kiln serve` (run by run_with_server.sh, which then checks exit status 0): an
// in-flight stream keeps receiving tokens after the signal and completes with [DONE]; new
// connections are refused once the listener is closed.
import assert from 'node:assert/strict';

const base = process.env.KILN_BASE_URL;
const pid = Number(process.env.KILN_SERVER_PID);
const headers = { authorization: `Bearer ${process.env.KILN_API_KEY}` };
const res = await fetch(`${base}/v1/completions`, {
  method: 'POST', headers,
  body: JSON.stringify({ prompt: 'Once upon a time', max_tokens: 480, ignore_eos: true,
    temperature: 0, stream: true }),
});
assert.equal(res.status, 200);
const decoder = new TextDecoder();
let buf = '', signalled = false, chunksAfterSignal = 0, done = false, finish = null;
for await (const piece of res.body) {
  buf += decoder.decode(piece, { stream: true });
  let end;
  while ((end = buf.indexOf('\n\n')) >= 0) {
    const data = buf.slice(6, end);
    buf = buf.slice(end + 2);
    if (data === '[DONE]') { done = true; continue; }
    const chunk = JSON.parse(data);
    if (signalled) chunksAfterSignal += 1;
    finish = chunk.choices[0]?.finish_reason ?? finish;
    if (!signalled) {
      process.kill(pid, 'SIGTERM');
      signalled = true;
      await new Promise((r) => setTimeout(r, 100));
      await assert.rejects(fetch(`${base}/health`), 'the listener must be closed while draining');
    }
  }
}
assert.ok(done, 'the in-flight stream must end with [DONE]');
assert.equal(finish, 'length');
assert.ok(chunksAfterSignal > 0, 'tokens must keep flowing after SIGTERM');
console.log(JSON.stringify({ chunksAfterSignal, finish }));
