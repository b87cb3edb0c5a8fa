/**
 * What sits in front of every route: API keys (API_KEYS: bearer or X-API-Key, on HTTP and on the
 * WebSocket upgrade, public health and docs, 401 that names no key), CORS (CORS_ORIGINS: off by
 * default, a list or '*', preflights before authentication), response compression (gzip and br
 * as Accept-Encoding asks, only above the threshold, never on the WebSocket), and the
 * configuration of the three keys (plus UPLOAD_TTL_SECONDS).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { after, before, describe, it } from 'node:test';
import zlib from 'node:zlib';

import SwaggerParser from '@apidevtools/swagger-parser';
import WebSocket from 'ws';

import { ApiKeys } from '../src/server/core/access.js';
import { COMPRESS_THRESHOLD_BYTES } from '../src/server/core/compression.js';
import { ConfigError, loadConfig } from '../src/server/core/config.js';
import { pngImage } from './helpers.js';
import { type TestServer, b64, startServer } from './server-helpers.js';

const KEY_A = 'a'.repeat(16) + '-first-key-0123456789';
const KEY_B = 'B0b'.repeat(11);

interface Raw {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** One request with node:http, so the body comes back exactly as sent (fetch would decompress it). */
function raw(base: string, method: string, path: string, headers: Record<string, string> = {}, body?: string): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = http.request(base + path, { method, headers: { ...(body !== undefined ? { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers } }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

const json = (r: Raw) => JSON.parse(r.body.toString('utf8'));

/** The answer to a WebSocket upgrade: opened (with the selected subprotocol) or refused (status and body). */
function upgrade(url: string, options: { headers?: Record<string, string>; protocols?: string[] } = {}): Promise<{ opened: true; protocol: string; closed: Promise<number> } | { opened: false; status: number; headers: http.IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url, options.protocols ?? [], { headers: options.headers ?? {} });
    const closed = new Promise<number>((done) => ws.once('close', (code) => done(code)));
    ws.once('open', () => resolve({ opened: true, protocol: ws.protocol, closed }));
    ws.once('unexpected-response', (_req, res) => {
      let body = '';
      res.on('data', (c: Buffer) => (body += c.toString()));
      res.on('end', () => resolve({ opened: false, status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    ws.once('error', (err) => reject(err));
  });
}

function expectUnauthorized(r: Raw, why: RegExp): void {
  assert.equal(r.status, 401, r.body.toString());
  assert.match(String(r.headers['content-type']), /application\/json/);
  const body = json(r);
  assert.equal(body.error.code, 'unauthorized');
  assert.match(body.error.message, why);
  assert.deepEqual(body.error.details, {});
  assert.equal(body.error.request_id, r.headers['x-request-id']);
  assert.match(String(r.headers['www-authenticate']), /^Bearer realm="sam3"/);
  for (const key of [KEY_A, KEY_B]) assert.ok(!r.body.toString().includes(key) && !JSON.stringify(r.headers).includes(key), 'no key is named');
}

describe('API keys (API_KEYS)', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({ API_KEYS: ` ${KEY_A}, ${KEY_B} ` });
  });
  after(async () => srv?.close());

  it('refuses a request without a key or with a wrong one, with the same 401 body shape and no key named', async () => {
    expectUnauthorized(await raw(srv.base, 'GET', '/models/info'), /requires an API key: send 'Authorization: Bearer <key>' or 'X-API-Key: <key>'/);
    expectUnauthorized(await raw(srv.base, 'GET', '/models/info', { authorization: `Bearer ${KEY_A}x` }), /the API key is not valid/);
    expectUnauthorized(await raw(srv.base, 'GET', '/models/info', { authorization: `Bearer ${KEY_A.slice(0, -1)}` }), /not valid/);
    expectUnauthorized(await raw(srv.base, 'GET', '/models/info', { 'x-api-key': 'short' }), /not valid/);
    expectUnauthorized(await raw(srv.base, 'GET', '/models/info', { authorization: `Basic ${b64(Buffer.from(`u:${KEY_A}`))}` }), /requires an API key/);
    assert.equal((await raw(srv.base, 'GET', '/models/info', { authorization: `Bearer ${KEY_A}` })).headers['www-authenticate'], undefined);
    // Every route, whatever its method, and an unknown one (no route is revealed without a key).
    expectUnauthorized(await raw(srv.base, 'POST', '/api/v1/image/segment', {}, JSON.stringify({ image: 'x', prompts: [] })), /requires/);
    expectUnauthorized(await raw(srv.base, 'GET', '/metrics'), /requires/);
    expectUnauthorized(await raw(srv.base, 'DELETE', '/api/v1/video/session/abc'), /requires/);
    expectUnauthorized(await raw(srv.base, 'GET', '/api/v1/video/uploads'), /requires/);
    expectUnauthorized(await raw(srv.base, 'GET', '/no/such/route'), /requires/);
    expectUnauthorized(await raw(srv.base, 'GET', '/healthz'), /requires/);
  });

  it('takes either key as a bearer token or as X-API-Key, and the request runs', async () => {
    const ways: Record<string, string>[] = [{ authorization: `Bearer ${KEY_A}` }, { authorization: `bearer ${KEY_B}` }, { 'x-api-key': KEY_B }, { 'x-api-key': KEY_A }];
    for (const headers of ways) {
      const r = await raw(srv.base, 'GET', '/models/info', headers);
      assert.equal(r.status, 200, JSON.stringify(headers));
    }
    const image = b64(await pngImage(40, 40, 5));
    const seg = await raw(srv.base, 'POST', '/api/v1/image/segment', { 'x-api-key': KEY_A }, JSON.stringify({ image, prompts: [{ type: 'text', text: 'a' }] }));
    assert.equal(seg.status, 200, seg.body.toString());
    assert.deepEqual(json(seg).image_size, { width: 40, height: 40 });
    const unknown = await raw(srv.base, 'GET', '/no/such/route', { 'x-api-key': KEY_A });
    assert.equal(unknown.status, 404, 'with a key, an unknown route is the usual 404');
  });

  it('leaves /health (and /health/*) and the API description public', async () => {
    assert.equal((await raw(srv.base, 'GET', '/health')).status, 200);
    const live = await raw(srv.base, 'GET', '/health/live');
    assert.notEqual(live.status, 401, 'paths under /health/ are probes too');
    assert.equal((await raw(srv.base, 'GET', '/docs')).status, 200);
    assert.equal((await raw(srv.base, 'GET', '/docs/swagger-ui.css')).status, 200);
    const doc = json(await raw(srv.base, 'GET', '/openapi.json'));
    await SwaggerParser.validate(structuredClone(doc));
    // The document says so: both schemes, required everywhere but on the public operations, and a 401 where they apply.
    assert.deepEqual(Object.keys(doc.components.securitySchemes).sort(), ['apiKey', 'bearer']);
    assert.deepEqual(doc.security, [{ bearer: [] }, { apiKey: [] }]);
    for (const p of ['/health', '/docs', '/openapi.json']) assert.deepEqual(doc.paths[p].get.security, [], p);
    assert.equal(doc.paths['/api/v1/image/segment'].post.responses['401'].content['application/json'].example.error.code, 'unauthorized');
    assert.equal(doc.paths['/health'].get.responses['401'], undefined);
  });

  it('checks WebSocket upgrades before the upgrade: headers or the key subprotocol; refused ones get the 401 JSON body', async () => {
    const url = `${srv.base.replace('http', 'ws')}/api/v1/video/ws/propagate/nope`;
    const refused = await upgrade(url);
    assert.equal(refused.opened, false);
    if (!refused.opened) {
      assert.equal(refused.status, 401);
      assert.match(String(refused.headers['content-type']), /application\/json/);
      const body = JSON.parse(refused.body);
      assert.equal(body.error.code, 'unauthorized');
      assert.ok(!refused.body.includes(KEY_A));
    }
    const wrong = await upgrade(url, { protocols: ['sam3', `sam3.key.${Buffer.from('not-the-key-at-all').toString('base64url')}`] });
    assert.equal(wrong.opened ? 0 : wrong.status, 401);
    const ways: { headers?: Record<string, string>; protocols?: string[] }[] = [{ headers: { authorization: `Bearer ${KEY_A}` } }, { headers: { 'x-api-key': KEY_B } }, { protocols: ['sam3', `sam3.key.${Buffer.from(KEY_A).toString('base64url')}`] }];
    for (const options of ways) {
      const ok = await upgrade(url, options);
      assert.ok(ok.opened, JSON.stringify(options));
      if (!ok.opened) continue;
      if (options.protocols) assert.equal(ok.protocol, 'sam3', 'the server selects sam3, never the key');
      // Past the upgrade, the socket's own rules: an unknown session is an error and close code 4404.
      assert.equal(await ok.closed, 4404);
    }
  });

  it('compares keys by their digests: any length, no prefix or suffix match', () => {
    const keys = new ApiKeys([KEY_A, KEY_B]);
    assert.equal(keys.enabled, true);
    assert.equal(new ApiKeys([]).enabled, false);
    assert.ok(keys.matches(KEY_A) && keys.matches(KEY_B));
    for (const k of ['', KEY_A.slice(1), `${KEY_A} `, KEY_A.toUpperCase(), KEY_B + KEY_A, 'x'.repeat(10_000)]) assert.equal(keys.matches(k), false, k.slice(0, 40));
  });
});

describe('CORS (CORS_ORIGINS)', () => {
  const preflight = (base: string, origin: string, path = '/api/v1/image/segment') =>
    raw(base, 'OPTIONS', path, { origin, 'access-control-request-method': 'POST', 'access-control-request-headers': 'content-type,x-api-key' });

  it('is off by default: no Access-Control-Allow-Origin, on preflights or requests', async () => {
    const srv = await startServer({}, { wait: false });
    try {
      const pre = await preflight(srv.base, 'https://tool.example.com');
      assert.equal(pre.headers['access-control-allow-origin'], undefined);
      const r = await raw(srv.base, 'GET', '/health', { origin: 'https://tool.example.com' });
      assert.equal(r.headers['access-control-allow-origin'], undefined);
    } finally {
      await srv.close();
    }
  });

  describe('a list of origins, with API keys', () => {
    let srv: TestServer;
    before(async () => {
      srv = await startServer({ CORS_ORIGINS: 'https://tool.example.com, http://localhost:5173/', API_KEYS: KEY_A }, { wait: false });
    });
    after(async () => srv?.close());

    it('answers a listed origin\'s preflight with 204 before authentication, naming the origin, methods and headers', async () => {
      const pre = await preflight(srv.base, 'https://tool.example.com');
      assert.equal(pre.status, 204);
      assert.equal(pre.headers['access-control-allow-origin'], 'https://tool.example.com');
      assert.match(String(pre.headers['access-control-allow-methods']), /POST/);
      const allowed = String(pre.headers['access-control-allow-headers']).toLowerCase().split(',');
      for (const h of ['authorization', 'x-api-key', 'content-type']) assert.ok(allowed.includes(h), h);
      assert.equal(pre.headers['access-control-max-age'], '600');
      assert.equal(pre.headers['access-control-allow-credentials'], undefined);
      assert.match(String(pre.headers.vary), /Origin/);
      const local = await preflight(srv.base, 'http://localhost:5173');
      assert.equal(local.headers['access-control-allow-origin'], 'http://localhost:5173', 'a trailing slash in the list is ignored');
    });

    it('gives other origins no CORS headers (a browser then refuses them), and the key is still required', async () => {
      const pre = await preflight(srv.base, 'https://evil.example.com');
      assert.equal(pre.headers['access-control-allow-origin'], undefined);
      assert.equal(pre.status, 401, 'not a CORS preflight for this server: an OPTIONS request like any other');
      const r = await raw(srv.base, 'GET', '/health', { origin: 'https://tool.example.com.evil.com' });
      assert.equal(r.headers['access-control-allow-origin'], undefined);
    });

    it("lets the listed origin read answers, errors included, and the headers it needs", async () => {
      const r = await raw(srv.base, 'GET', '/models/info', { origin: 'https://tool.example.com' });
      assert.equal(r.status, 401, 'no key: refused, and the browser may read why');
      assert.equal(r.headers['access-control-allow-origin'], 'https://tool.example.com');
      const exposed = String(r.headers['access-control-expose-headers']).toLowerCase();
      for (const h of ['x-request-id', 'retry-after', 'www-authenticate']) assert.ok(exposed.includes(h), h);
      const ok = await raw(srv.base, 'GET', '/health', { origin: 'https://tool.example.com' });
      assert.equal(ok.headers['access-control-allow-origin'], 'https://tool.example.com');
    });
  });

  it("'*' lets any origin in", async () => {
    const srv = await startServer({ CORS_ORIGINS: '*' }, { wait: false });
    try {
      const pre = await preflight(srv.base, 'https://anything.example.org');
      assert.equal(pre.status, 204);
      assert.equal(pre.headers['access-control-allow-origin'], '*');
      assert.equal((await raw(srv.base, 'GET', '/health', { origin: 'null' })).headers['access-control-allow-origin'], '*');
    } finally {
      await srv.close();
    }
  });
});

describe('response compression', () => {
  let srv: TestServer;
  let body: string;
  before(async () => {
    srv = await startServer({});
    // Every query's mask (threshold 0): a large JSON answer.
    const image = b64(await pngImage(320, 240, 9));
    body = JSON.stringify({ image, prompts: ['a', 'b', 'c', 'd'].map((text) => ({ type: 'text', text })), confidence_threshold: 0 });
  });
  after(async () => srv?.close());

  it('compresses a large JSON answer with gzip or br as Accept-Encoding asks; decompressed it is the plain answer', async () => {
    // Every compared answer comes from the cached features (the first, uncached, one is not compared).
    assert.equal((await raw(srv.base, 'POST', '/api/v1/image/segment', {}, body)).status, 200);
    const plain = await raw(srv.base, 'POST', '/api/v1/image/segment', {}, body);
    assert.equal(plain.status, 200);
    assert.equal(plain.headers['content-encoding'], undefined, 'no Accept-Encoding: plain');
    assert.ok(plain.body.byteLength > 50_000, `a large answer (${plain.body.byteLength} bytes)`);
    const expected = JSON.parse(plain.body.toString());
    assert.equal(expected.cache_hit, true);
    const strip = (o: any) => ({ ...o, inference_time_ms: 0 });
    for (const [accept, encoding, decode] of [
      ['gzip', 'gzip', zlib.gunzipSync],
      ['br', 'br', zlib.brotliDecompressSync],
      ['gzip, deflate, br', 'br', zlib.brotliDecompressSync],
      ['gzip;q=1.0, br;q=0.5', 'gzip', zlib.gunzipSync],
    ] as const) {
      const r = await raw(srv.base, 'POST', '/api/v1/image/segment', { 'accept-encoding': accept }, body);
      assert.equal(r.status, 200);
      assert.equal(r.headers['content-encoding'], encoding, accept);
      assert.match(String(r.headers.vary), /Accept-Encoding/i);
      // RLE strings of the random-weight fixture are dense; they still lose a third or more.
      assert.ok(r.body.byteLength < plain.body.byteLength * 0.75, `${accept}: ${r.body.byteLength} of ${plain.body.byteLength} bytes`);
      assert.deepEqual(strip(JSON.parse(decode(r.body).toString())), strip(expected), accept);
    }
    for (const accept of ['identity', 'deflate', 'zstd', 'gzip;q=0, br;q=0']) {
      const r = await raw(srv.base, 'POST', '/api/v1/image/segment', { 'accept-encoding': accept }, body);
      assert.equal(r.headers['content-encoding'], undefined, accept);
      assert.deepEqual(strip(JSON.parse(r.body.toString())), strip(expected));
    }
  });

  it(`leaves answers under ${COMPRESS_THRESHOLD_BYTES} bytes plain, errors included`, async () => {
    const health = await raw(srv.base, 'GET', '/health', { 'accept-encoding': 'gzip, br' });
    assert.ok(health.body.byteLength < COMPRESS_THRESHOLD_BYTES);
    assert.equal(health.headers['content-encoding'], undefined);
    assert.equal(json(health).status, 'healthy');
    const err = await raw(srv.base, 'POST', '/api/v1/image/segment', { 'accept-encoding': 'gzip, br' }, '{"image": 1}');
    assert.equal(err.status, 400);
    assert.equal(err.headers['content-encoding'], undefined);
    assert.equal(json(err).error.code, 'validation_error');
    const doc = await raw(srv.base, 'GET', '/openapi.json', { 'accept-encoding': 'gzip' });
    assert.equal(doc.headers['content-encoding'], 'gzip', 'the OpenAPI document is large');
    assert.equal(JSON.parse(zlib.gunzipSync(doc.body).toString()).openapi, '3.1.0');
  });

  it('never compresses the WebSocket: the server declines permessage-deflate', async () => {
    const url = `${srv.base.replace('http', 'ws')}/api/v1/video/ws/propagate/nope`;
    const ws = new WebSocket(url, { perMessageDeflate: true, headers: { 'accept-encoding': 'gzip, br' } });
    // Listeners first: the server's first message may come in the same packet as the upgrade.
    const message = new Promise<Buffer>((resolve) => ws.once('message', (d: Buffer) => resolve(d)));
    const closed = new Promise<number>((resolve) => ws.once('close', (code) => resolve(code)));
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('error', reject);
    });
    assert.equal(ws.extensions, '', 'no extension negotiated');
    assert.equal(JSON.parse((await message).toString()).code, 'session_not_found', 'messages are plain JSON text');
    assert.equal(await closed, 4404);
  });
});

describe('configuration of API_KEYS, CORS_ORIGINS and UPLOAD_TTL_SECONDS', () => {
  const load = (env: Record<string, string>) => loadConfig(env, { envFile: false });
  const refused = (env: Record<string, string>, key: string, message: RegExp) => {
    assert.throws(
      () => load(env),
      (err: Error) => {
        assert.ok(err instanceof ConfigError);
        assert.match(err.message, new RegExp(`${key}=`));
        assert.match(err.message, message);
        return true;
      },
    );
  };

  it('parses the lists; defaults are off, off and a day', () => {
    const d = load({});
    assert.deepEqual([d.apiKeys, d.corsOrigins, d.video.uploadTtlMs], [[], undefined, 86_400_000]);
    const c = load({ API_KEYS: `${KEY_A},${KEY_B},`, CORS_ORIGINS: 'https://a.example.com:8443,http://localhost:3000', UPLOAD_TTL_SECONDS: '0' });
    assert.deepEqual(c.apiKeys, [KEY_A, KEY_B]);
    assert.deepEqual(c.corsOrigins, ['https://a.example.com:8443', 'http://localhost:3000']);
    assert.equal(c.video.uploadTtlMs, 0);
    assert.equal(load({ CORS_ORIGINS: ' * ' }).corsOrigins, '*');
  });

  it('refuses bad values naming the key, and never prints a key', () => {
    for (const bad of ['short', `${KEY_A} with space`, `${KEY_A},tiny`]) {
      refused({ API_KEYS: bad }, 'API_KEYS', /comma-separated list of keys, each 16 to 512 visible ASCII/);
      try {
        load({ API_KEYS: bad });
      } catch (err) {
        assert.ok(!(err as Error).message.includes(KEY_A) && !(err as Error).message.includes('short'), 'the value is hidden');
        assert.match((err as Error).message, /API_KEYS=\(hidden\)/);
      }
    }
    for (const bad of ['tool.example.com', 'https://a.example.com/path', 'ftp://a.example.com', 'https://a.example.com,*']) refused({ CORS_ORIGINS: bad }, 'CORS_ORIGINS', /origins such as https:\/\/tool\.example\.com/);
    refused({ UPLOAD_TTL_SECONDS: '-1' }, 'UPLOAD_TTL_SECONDS', />= 0/);
    refused({ UPLOAD_TTL_SECONDS: 'a day' }, 'UPLOAD_TTL_SECONDS', /must be a number/);
  });
});
