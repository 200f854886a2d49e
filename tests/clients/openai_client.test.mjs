// The official `openai` npm client against `kiln serve` (stories260K): chat, streaming chat,
// completions, assistant prefill, logprobs and error cases. Run by run_with_server.sh, which
// provides KILN_BASE_URL and KILN_API_KEY.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const baseURL = `${process.env.KILN_BASE_URL}/v1`;
const client = new OpenAI({ baseURL, apiKey: process.env.KILN_API_KEY, maxRetries: 0 });
const model = 'stories';
const user = (content) => ({ role: 'user', content });

async function streamText(stream) {
  const texts = [];
  const finish = [];
  let usage = null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      texts[c.index] = (texts[c.index] ?? '') + (c.delta?.content ?? c.text ?? '');
      if (c.finish_reason) finish[c.index] = c.finish_reason;
    }
  }
  return { texts, finish, usage };
}

test('models.list names the served model', async () => {
  const models = await client.models.list();
  assert.deepEqual(models.data.map((m) => m.id), [model]);
});

test('chat completion', async () => {
  const r = await client.chat.completions.create({
    model, messages: [user('Tell me a story')], max_tokens: 16, temperature: 0,
  });
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.choices[0].message.role, 'assistant');
  assert.ok(r.choices[0].message.content.length > 0);
  assert.ok(['stop', 'length'].includes(r.choices[0].finish_reason));
  assert.ok(r.usage.prompt_tokens > 0);
  assert.ok(r.usage.completion_tokens > 0 && r.usage.completion_tokens <= 16);
  assert.equal(r.usage.total_tokens, r.usage.prompt_tokens + r.usage.completion_tokens);
  assert.equal(typeof r.usage.prompt_tokens_details.cached_tokens, 'number');
});

test('streamed chat equals non-streamed chat for the same seed', async () => {
  const params = {
    model, messages: [user('Once upon a time')], max_completion_tokens: 40, temperature: 1.0,
    top_p: 0.95, seed: 4242,
  };
  const full = await client.chat.completions.create(params);
  const s = await streamText(await client.chat.completions.create({
    ...params, stream: true, stream_options: { include_usage: true },
  }));
  assert.equal(s.texts[0], full.choices[0].message.content);
  assert.equal(s.finish[0], full.choices[0].finish_reason);
  assert.equal(s.usage.completion_tokens, full.usage.completion_tokens);
  assert.equal(s.usage.prompt_tokens, full.usage.prompt_tokens);
});

test('completions: string, token ids, several prompts, echo, n', async () => {
  const r = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 12, temperature: 0,
  });
  assert.equal(r.object, 'text_completion');
  const text = r.choices[0].text;
  assert.ok(text.length > 0);
  const tok = await (await fetch(`${process.env.KILN_BASE_URL}/tokenize`, {
    method: 'POST',
    headers: { authorization: `Bearer ${process.env.KILN_API_KEY}` },
    body: JSON.stringify({ prompt: 'Once upon a time' }),
  })).json();
  const byIds = await client.completions.create({
    model, prompt: tok.tokens, max_tokens: 12, temperature: 0,
  });
  assert.equal(byIds.choices[0].text, text);
  const many = await client.completions.create({
    model, prompt: [tok.tokens, tok.tokens], max_tokens: 12, temperature: 0,
  });
  assert.deepEqual(many.choices.map((c) => c.text), [text, text]);
  const echo = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 12, temperature: 0, echo: true,
  });
  assert.equal(echo.choices[0].text, 'Once upon a time' + text);
  const n = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 8, n: 3, seed: 5,
  });
  assert.equal(n.choices.length, 3);
  assert.deepEqual(n.choices.map((c) => c.index), [0, 1, 2]);
});

test('streamed completion equals non-streamed, stop strings never leak', async () => {
  const base = { model, prompt: 'Once upon a time', max_tokens: 30, temperature: 0 };
  const ref = (await client.completions.create(base)).choices[0].text;
  const stop = ref.slice(10, 14);
  const expected = ref.slice(0, ref.indexOf(stop));
  const full = await client.completions.create({ ...base, stop: [stop] });
  assert.equal(full.choices[0].text, expected);
  assert.equal(full.choices[0].finish_reason, 'stop');
  const s = await streamText(await client.completions.create({ ...base, stop, stream: true }));
  assert.equal(s.texts[0], expected);
  assert.equal(s.finish[0], 'stop');
});

test('assistant prefill continues the final message', async () => {
  const messages = [user('Tell me a story'), { role: 'assistant', content: 'Once upon a time' }];
  const vllm = await client.chat.completions.create({
    model, messages, max_tokens: 12, temperature: 0,
    continue_final_message: true, add_generation_prompt: false,
  });
  const partial = await client.chat.completions.create({
    model, messages: [messages[0], { ...messages[1], partial: true }], max_tokens: 12,
    temperature: 0,
  });
  const prefix = await client.chat.completions.create({
    model, messages: [messages[0], { ...messages[1], prefix: true }], max_tokens: 12,
    temperature: 0,
  });
  assert.ok(vllm.choices[0].message.content.length > 0);
  assert.equal(partial.choices[0].message.content, vllm.choices[0].message.content);
  assert.equal(prefix.choices[0].message.content, vllm.choices[0].message.content);
  // A new answer (no prefill) starts after "Assistant:" instead.
  const fresh = await client.chat.completions.create({
    model, messages, max_tokens: 12, temperature: 0,
  });
  assert.equal(typeof fresh.choices[0].message.content, 'string');
  await assert.rejects(
    client.chat.completions.create({
      model, messages, max_tokens: 4, continue_final_message: true, add_generation_prompt: true,
    }),
    (e) => e.status === 400);
});

test('logprobs: chat and completions shapes', async () => {
  const chat = await client.chat.completions.create({
    model, messages: [user('Hi')], max_tokens: 5, temperature: 0, logprobs: true, top_logprobs: 3,
  });
  const content = chat.choices[0].logprobs.content;
  assert.equal(content.length, chat.usage.completion_tokens);
  for (const e of content) {
    assert.equal(e.top_logprobs.length, 3);
    assert.equal(e.token, e.top_logprobs[0].token);  // greedy picks the top token
    assert.ok(e.logprob <= 0);
    assert.deepEqual(e.bytes, [...Buffer.from(e.token, 'utf8')]);
  }
  assert.equal(content.map((e) => e.token).join(''), chat.choices[0].message.content);
  const comp = await client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 4, temperature: 0, logprobs: 2,
  });
  const lp = comp.choices[0].logprobs;
  assert.equal(lp.tokens.length, 4);
  assert.equal(lp.token_logprobs.length, 4);
  assert.equal(lp.text_offset[0], 0);
  assert.ok(Object.keys(lp.top_logprobs[0]).length >= 2);
  assert.equal(lp.tokens.join(''), comp.choices[0].text);
});

test('errors: 400, 401, 404 with OpenAI error bodies', async () => {
  const expectStatus = async (promise, status, re) => {
    await assert.rejects(promise, (e) => {
      assert.equal(e.status, status, e.message);
      if (re) assert.match(e.message, re);
      return true;
    });
  };
  await expectStatus(client.chat.completions.create({
    model, messages: [user('x')], temperature: -1,
  }), 400, /temperature/);
  await expectStatus(client.chat.completions.create({ model, messages: [] }), 400, /messages/);
  await expectStatus(client.completions.create({
    model, prompt: 'Once upon a time', max_tokens: 600,
  }), 400, /maximum context length is 512 tokens.*605 tokens \(5 in the prompt, 600 in the completion\)/);
  await expectStatus(client.completions.create({ model, prompt: [1, 2, 100000] }), 400,
    /outside the vocabulary/);
  await expectStatus(client.chat.completions.create({
    model: 'gpt-4o', messages: [user('x')],
  }), 404, /does not exist/);
  const bad = new OpenAI({ baseURL, apiKey: 'wrong', maxRetries: 0 });
  await expectStatus(bad.models.list(), 401, /API key/);
  try {
    await client.chat.completions.create({ model, messages: [user('x')], top_p: 5 });
    assert.fail('expected a 400');
  } catch (e) {
    assert.equal(e.error?.type ?? e.type, 'invalid_request_error');
    assert.equal(e.param, 'top_p');
  }
});
