// An independent OpenAI-compatible test server (Node's http module, nothing shared with kiln): it
// records every request it receives (method, path, headers, parsed body) and answers
// /v1/chat/completions and /v1/completions by streaming SSE chunks in OpenAI's format, or by a
// misbehaviour chosen per request. The reply to a request is deterministic: `max_tokens` tokens
// "r<id>t<i> ", with id the order in which distinct bodies arrived (a retried identical body keeps
// its id and its behaviour). GET /metrics answers 404 (not a kiln server).
//
//   const srv = await startFakeServer({ behavior: (id, body) => ({ kind: 'ok' }), ... });
//   kinds: ok | http500 | drop_before (socket destroyed before any response byte) |
//          drop_mid (two chunks, then the socket is destroyed) | hang (never answers) |
//          stream_error (an error object inside the stream) | json (a non-streaming JSON answer) |
//          http503_utf8 (a 503 whose 400-byte text body is multi-byte characters: NON_JSON_UTF8) |
//          http503_ff (a 503 whose 400-byte body starts with the byte 0xFF: NON_JSON_FF) |
//          bad_json_ff (a 200 "JSON" answer that is NON_JSON_FF) |
//          bad_chunk_utf8 (an SSE stream whose one chunk is NON_JSON_UTF8, then [DONE])
//   options: firstTokenMs (default 20), tokenMs (default 2), usage (default true: honour
//            stream_options.include_usage), closeIdleAfterMs (close idle keep-alive connections),
//            host (the address to listen on, default 127.0.0.1; '::1' for IPv6)
import http from 'node:http';

// Error bodies that are not JSON and not ASCII, 400 bytes each. NON_JSON_UTF8: 'x' and 133 '€'
// (3 bytes each), so a cut at 200 or 300 bytes falls inside a character.
export const NON_JSON_UTF8 = Buffer.from('x' + '€'.repeat(133), 'utf8');
export const NON_JSON_FF = Buffer.concat([Buffer.from([0xff]), Buffer.from('é'.repeat(199) + 'y', 'utf8')]);

export function replyTokens(id, n) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(`r${id}t${i} `);
  return out;
}

export async function startFakeServer(options = {}) {
  const behavior = options.behavior ?? (() => ({ kind: 'ok' }));
  const firstTokenMs = options.firstTokenMs ?? 20;
  const tokenMs = options.tokenMs ?? 2;
  const usage = options.usage ?? true;
  const requests = [];  // every attempt, in arrival order
  const ids = new Map();  // body text → id
  const replies = new Map();  // id → reply text
  const sockets = new Set();
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  const server = http.createServer(async (req, res) => {
    // closeIdleAfterMs: the server closes a keep-alive connection that stays idle that long.
    clearTimeout(req.socket.kilnIdle);
    if (options.closeIdleAfterMs !== undefined) {
      res.on('finish', () => {
        req.socket.kilnIdle = setTimeout(() => req.socket.destroy(), options.closeIdleAfterMs);
      });
    }
    let raw = '';
    for await (const piece of req) raw += piece;
    const record = { method: req.method, url: req.url, headers: req.headers, raw, time: Date.now() };
    requests.push(record);
    if (req.method === 'GET' && req.url === '/metrics') {
      res.writeHead(404, { 'content-type': 'text/plain' });
      return res.end('not here\n');
    }
    const chat = req.url === '/v1/chat/completions';
    if (req.method !== 'POST' || (!chat && req.url !== '/v1/completions')) {
      res.writeHead(404, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: { message: `no route ${req.url}`, type: 'not_found' } }));
    }
    let body;
    try { body = JSON.parse(raw); } catch {
      res.writeHead(400, { 'content-type': 'application/json' });
      return res.end(JSON.stringify({ error: { message: 'bad JSON', type: 'invalid_request_error' } }));
    }
    record.body = body;
    if (!ids.has(raw)) ids.set(raw, ids.size);
    const id = ids.get(raw);
    record.id = id;
    const b = behavior(id, body);
    record.kind = b.kind;
    const n = body.max_tokens ?? 16;
    const tokens = replyTokens(id, n);
    replies.set(id, tokens.join(''));
    const promptTokens = chat
      ? body.messages.map((m) => m.content.split(' ').length).reduce((a, c) => a + c, 0)
      : String(body.prompt).split(' ').length;
    const base = { id: `fake-${id}`, created: 1, model: body.model };
    const chunk = (i, text, finish) => chat
      ? { ...base, object: 'chat.completion.chunk',
          choices: [{ index: 0, delta: i === 0 ? { role: 'assistant', content: text } : { content: text },
                      finish_reason: finish }] }
      : { ...base, object: 'text_completion', choices: [{ index: 0, text, finish_reason: finish }] };
    const send = (obj) => res.write(`data: ${JSON.stringify(obj)}\n\n`);

    switch (b.kind) {
      case 'http500':
        const payload = JSON.stringify({ error: { message: 'fake overload', type: 'server_error' } });
        res.writeHead(500, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
        return res.end(payload);
      case 'http503_utf8':
      case 'http503_ff': {
        const bytes = b.kind === 'http503_utf8' ? NON_JSON_UTF8 : NON_JSON_FF;
        res.writeHead(503, { 'content-type': 'text/plain', 'content-length': bytes.length });
        return res.end(bytes);
      }
      case 'bad_json_ff':
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': NON_JSON_FF.length });
        return res.end(NON_JSON_FF);
      case 'bad_chunk_utf8':
        res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
        res.write(Buffer.concat([Buffer.from('data: '), NON_JSON_UTF8, Buffer.from('\n\n')]));
        res.write('data: [DONE]\n\n');
        return res.end();
      case 'drop_before':
        return req.socket.destroy();
      case 'hang':
        return;  // never answers; the client's timeout must end it
      case 'json': {
        await sleep(firstTokenMs);
        const text = tokens.join('');
        const choice = chat ? { index: 0, message: { role: 'assistant', content: text }, finish_reason: 'length' }
                            : { index: 0, text, finish_reason: 'length' };
        const payload = JSON.stringify({ ...base, choices: [choice],
          usage: { prompt_tokens: promptTokens, completion_tokens: n, total_tokens: promptTokens + n } });
        // With a Content-Length (not chunked): a Beast 1.74 limit quirk once failed exactly this.
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) });
        return res.end(payload);
      }
      default:
        break;
    }
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    if (firstTokenMs > 0) await sleep(firstTokenMs);
    for (let i = 0; i < n; i++) {
      if (b.kind === 'drop_mid' && i === 2) return req.socket.destroy();
      if (b.kind === 'stream_error' && i === 1) {
        send({ error: { message: 'fake engine failure', type: 'server_error' } });
        res.write('data: [DONE]\n\n');
        return res.end();
      }
      send(chunk(i, tokens[i], i === n - 1 ? 'length' : null));
      if (tokenMs > 0 && i + 1 < n) await sleep(tokenMs);
    }
    if (usage && body.stream_options?.include_usage) {
      send({ ...base, object: chat ? 'chat.completion.chunk' : 'text_completion', choices: [],
             usage: { prompt_tokens: promptTokens, completion_tokens: n, total_tokens: promptTokens + n } });
    }
    res.write('data: [DONE]\n\n');
    res.end();
  });
  const stats = { maxOpenSockets: 0, connections: 0 };
  server.on('connection', (s) => {
    sockets.add(s);
    stats.connections++;
    stats.maxOpenSockets = Math.max(stats.maxOpenSockets, sockets.size);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise((r) => server.listen(0, options.host ?? '127.0.0.1', r));
  return {
    port: server.address().port,
    requests,
    replies,
    stats,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(r); }),
  };
}
