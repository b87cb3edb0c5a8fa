/**
 * What an HTTP client library will not send: malformed HTTP on a bare socket (bad chunk sizes,
 * invalid methods, oversized headers, smuggling attempts, stalls), and junk on the WebSocket
 * (binary and non-JSON messages, bad options, oversized messages, protocol garbage, abrupt
 * closes). Each must be answered (a JSON error) or closed promptly, never crash or hang the server.
 */
import net from 'node:net';

import WebSocket from 'ws';

import type { Client } from './client.js';
import { uri } from './hostile.js';
import { type Rng, junkValue } from './random.js';

interface RawCase {
  data: string | Buffer;
  /** Half-close after writing (the client says it is done). */
  end?: boolean;
  /** A connection that never sent a request may be closed without an answer. */
  silentOk?: boolean;
}

const H = 'Host: fuzz\r\n';

export const RAW_CASES: Record<string, (rng: Rng) => RawCase> = {
  'bad-chunk-size': () => ({ data: `POST /api/v1/image/embed HTTP/1.1\r\n${H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n` }),
  'huge-chunk-stall': () => ({ data: `POST /api/v1/image/embed HTTP/1.1\r\n${H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}\r\n` }),
  'huge-chunk-then-close': () => ({ data: `POST /api/v1/image/segment HTTP/1.1\r\n${H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffff\r\n{}\r\n`, end: true }),
  'chunk-extension-overflow': () => ({ data: `POST /api/v1/image/embed HTTP/1.1\r\n${H}Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n2;${'e'.repeat(20_000)}\r\n{}\r\n0\r\n\r\n` }),
  'invalid-method': (rng) => ({ data: `${rng.pick(['FO@O', 'G ET', '123', 'GET\u0000'])} /docs HTTP/1.1\r\n${H}\r\n` }),
  'header-overflow': () => ({ data: `GET /health HTTP/1.1\r\n${H}X-Big: ${'a'.repeat(20_000)}\r\n\r\n` }),
  'url-overflow': () => ({ data: `GET /health?${'q'.repeat(100_000)} HTTP/1.1\r\n${H}\r\n` }),
  'bare-crlf': () => ({ data: '\r\n\r\n' }),
  silent: () => ({ data: '', silentOk: true }),
  'partial-headers-stall': () => ({ data: `GET /health HTTP/1.1\r\n${H}X-Slow: yes\r\n` }),
  'partial-headers-then-close': () => ({ data: `POST /api/v1/image/segment HTTP/1.1\r\n${H}Content-Len`, end: true }),
  'content-length-and-chunked': () => ({ data: `POST /api/v1/image/embed HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n` }),
  'two-content-lengths': () => ({ data: `POST /api/v1/image/embed HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 2\r\nContent-Length: 5\r\n\r\n{}` }),
  'body-shorter-than-length': () => ({ data: `POST /api/v1/image/embed HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"image": "`, end: true }),
  'body-stall': () => ({ data: `POST /api/v1/video/session/start HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n{"video_path": "` }),
  'expect-continue-stall': () => ({ data: `POST /api/v1/image/embed HTTP/1.1\r\n${H}Content-Type: application/json\r\nContent-Length: 100\r\nExpect: 100-continue\r\n\r\n` }),
  'http-0.9': () => ({ data: 'GET /\r\n\r\n' }),
  'http2-preface': () => ({ data: 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' }),
  'http-version-junk': () => ({ data: `GET /health HTTP/9.9\r\n${H}\r\n` }),
  'nul-in-header': () => ({ data: `GET /health HTTP/1.1\r\n${H}X-A: a\u0000b\r\n\r\n` }),
  'obs-fold': () => ({ data: `GET /health HTTP/1.1\r\n${H}X-A: a\r\n  folded\r\n\r\n` }),
  'absolute-form': () => ({ data: `GET http://elsewhere.example/health HTTP/1.1\r\n${H}Connection: close\r\n\r\n` }),
  pipelined: () => ({ data: `GET /health HTTP/1.1\r\n${H}\r\nGET /models/info HTTP/1.1\r\n${H}\r\nLINK /docs HTTP/1.1\r\n${H}Connection: close\r\n\r\n` }),
  'tls-hello': (rng) => ({ data: Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01]), rng.bytes(200)]) }),
  'binary-junk': (rng) => ({ data: rng.bytes(rng.int(1, 4000)), end: rng.chance(0.5) }),
};

interface ParsedResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** The complete responses in what the server wrote (Content-Length framed, as ours are). */
function parseResponses(text: string): ParsedResponse[] {
  const out: ParsedResponse[] = [];
  let at = 0;
  while (at < text.length) {
    const end = text.indexOf('\r\n\r\n', at);
    if (end < 0) break;
    const lines = text.slice(at, end).split('\r\n');
    const m = /^HTTP\/1\.[01] (\d{3})/.exec(lines[0] ?? '');
    if (!m) break;
    const headers: Record<string, string> = {};
    for (const line of lines.slice(1)) {
      const i = line.indexOf(':');
      if (i > 0) headers[line.slice(0, i).trim().toLowerCase()] = line.slice(i + 1).trim();
    }
    const status = Number(m[1]);
    if (status === 100) {
      at = end + 4;
      continue;
    }
    const length = Number(headers['content-length'] ?? 0);
    out.push({ status, headers, body: text.slice(end + 4, end + 4 + length) });
    if (headers['transfer-encoding']) break;
    at = end + 4 + length;
  }
  return out;
}

/** Runs one raw case; `waitMs` bounds how long the server may take to answer or close. */
export async function runRawCase(client: Client, rng: Rng, waitMs: number): Promise<void> {
  const name = rng.pick(Object.keys(RAW_CASES));
  const c = RAW_CASES[name]!(rng);
  const tally = client.tally;
  tally.rawConnections++;
  tally.requests++;
  tally.hostile++;
  tally.cases[`raw ${name}`] = (tally.cases[`raw ${name}`] ?? 0) + 1;
  const { port, hostname } = new URL(client.base);
  const result = await new Promise<{ text: string; closed: boolean }>((resolve) => {
    const socket = net.connect(Number(port), hostname);
    let text = '';
    const timer = setTimeout(() => finish(false), waitMs);
    function finish(closed: boolean) {
      clearTimeout(timer);
      socket.destroy();
      resolve({ text, closed });
    }
    socket.on('data', (d: Buffer) => (text += d.toString('latin1')));
    socket.on('close', () => finish(true));
    socket.on('error', () => undefined);
    socket.on('connect', () => {
      if (c.data.length > 0) socket.write(c.data);
      if (c.end) socket.end();
    });
  });
  const where = { name: `raw ${name}`, method: 'RAW', path: name };
  if (!result.closed && result.text === '') {
    tally.count('timeout');
    tally.fail({ kind: 'no_answer', name: where.name, detail: `no answer and not closed after ${waitMs} ms` });
    return;
  }
  const responses = parseResponses(result.text);
  if (responses.length === 0) {
    tally.count(result.text === '' ? 'closed' : 'unparsed');
    if (result.text !== '' || !(c.silentOk || c.end || name === 'binary-junk')) {
      tally.fail({ kind: 'no_answer', name: where.name, detail: `closed with ${result.text.length ? `an unparsable answer ${JSON.stringify(result.text.slice(0, 120))}` : 'no answer'}` });
    }
    return;
  }
  for (const r of responses) {
    tally.count(r.status);
    let json: any;
    try {
      json = JSON.parse(r.body);
    } catch {
      json = undefined;
    }
    client.check(where, { status: r.status, text: r.body, json }, false);
  }
}

const SOCKET_PATH = '/api/v1/video/ws/propagate/';
const SERVER_MESSAGE_TYPES = new Set(['frame', 'complete', 'cancelled', 'error']);

/** One WebSocket with a random sequence of junk (and some valid) messages. */
export async function runSocketCase(client: Client, rng: Rng, sessions: string[]): Promise<void> {
  const tally = client.tally;
  tally.wsConnections++;
  const target = rng.chance(0.75) && sessions.length > 0 ? rng.pick(sessions) : rng.pick(['nope', uri(rng.text(6)), 'x'.repeat(200), '%zz', '..%2F..%2Fhealth']);
  const path = rng.chance(0.05) ? rng.pick(['/api/v1/nowhere', '/health', `${SOCKET_PATH}a/b`]) : SOCKET_PATH + target;
  const name = `ws ${path.startsWith(SOCKET_PATH) ? 'propagate' : path}`;
  tally.cases[name] = (tally.cases[name] ?? 0) + 1;
  const fail = (detail: string) => tally.fail({ kind: 'ws_protocol', name, detail });
  const ws = new WebSocket(client.base.replace(/^http/, 'ws') + path, { headers: client.authHeaders });
  ws.on('error', () => undefined);
  ws.on('unexpected-response', (_req, res) => {
    let body = '';
    res.on('data', (d: Buffer) => (body += d.toString()));
    res.on('end', () => {
      tally.count(res.statusCode ?? 0);
      let json: any;
      try {
        json = JSON.parse(body);
      } catch {
        json = undefined;
      }
      client.check({ name, method: 'UPGRADE', path }, { status: res.statusCode ?? 0, text: body, json }, false);
      ws.terminate();
    });
  });
  ws.on('message', (data, isBinary) => {
    tally.wsMessages++;
    let m: any;
    try {
      m = JSON.parse(data.toString());
    } catch {
      fail(`a ${isBinary ? 'binary' : 'text'} message that is not JSON`);
      return;
    }
    if (!SERVER_MESSAGE_TYPES.has(m?.type)) fail(`a message of type ${JSON.stringify(m?.type)}`);
    if (m?.type === 'error' && (typeof m.code !== 'string' || m.code === 'internal_error')) fail(`error message ${JSON.stringify(m).slice(0, 200)}`);
  });
  const opened = await new Promise<boolean>((resolve) => {
    ws.once('open', () => resolve(true));
    ws.once('close', () => resolve(false));
  });
  if (opened) {
    const n = rng.int(1, 6);
    for (let i = 0; i < n && ws.readyState === WebSocket.OPEN; i++) {
      const kind = rng.int(0, 10);
      if (kind === 0) ws.send(rng.bytes(rng.int(0, 500)));
      else if (kind === 1) ws.send(rng.pick(['not json', '', '[]', 'null', '"x"', '{', '{"type": "cancel"']));
      else if (kind === 2) ws.send(JSON.stringify({ type: 'cancel' }));
      else if (kind === 3) ws.send(JSON.stringify({ direction: 'forward', max_frames: rng.int(0, 3) }));
      else if (kind === 4) ws.send(JSON.stringify({ direction: junkValue(rng), start_frame_index: junkValue(rng), max_frames: junkValue(rng), mask_format: junkValue(rng) }));
      else if (kind === 5) ws.send('x'.repeat(rng.int(64 * 1024, 200 * 1024)));
      else if (kind === 6) (ws as unknown as { _socket: net.Socket })._socket.write(rng.bytes(rng.int(1, 64)));
      else if (kind === 7) for (let p = 0; p < 50; p++) ws.ping();
      else if (kind === 8) ws.send(JSON.stringify({ type: rng.pick(['start', 'pause', 'CANCEL', 'frame']), direction: 'backward' }));
      else if (kind === 9) ws.send(`{"__proto__": {"direction": "forward"}, "max_frames": 1}`);
      else ws.send(JSON.stringify({ direction: 'both', start_frame_index: rng.int(-2, 20), max_frames: rng.int(-1, 3) }));
      await new Promise((resolve) => setTimeout(resolve, rng.int(0, 300)));
    }
    await new Promise((resolve) => setTimeout(resolve, rng.int(100, 1500)));
    if (rng.chance(0.5)) ws.terminate();
    else ws.close(rng.pick([1000, 1001, 4000, 4999]));
  }
  await new Promise<void>((resolve) => {
    if (ws.readyState === WebSocket.CLOSED) resolve();
    else {
      ws.once('close', () => resolve());
      setTimeout(() => {
        ws.terminate();
        resolve();
      }, 5000);
    }
  });
}
