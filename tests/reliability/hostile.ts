/**
 * Hostile HTTP requests of the reliability suite. Bodies of every JSON and multipart operation are
 * generated from the server's own OpenAPI document (so a new endpoint or field is fuzzed without
 * editing this file) and then broken: wrong types, huge and odd numbers, missing and unknown
 * fields. Hand-written cases add what a schema cannot describe: bad base64 and data URLs, broken
 * and bomb images, bad multipart, path escapes in bodies and URLs, odd methods, content types and
 * encodings, deep and huge JSON.
 */
import zlib from 'node:zlib';

import type { HttpRequest } from './client.js';
import type { Fixtures } from './fixtures.js';
import { Rng, invalidJsonNumberText, junkValue } from './random.js';

export interface Operation {
  method: string;
  /** OpenAPI path template, e.g. /api/v1/video/session/{session_id}/prompt. */
  path: string;
  json?: Schema;
  multipart?: Schema;
}

type Schema = Record<string, any>;

export interface HostileContext {
  rng: Rng;
  fx: Fixtures;
  doc: Schema;
  ops: Operation[];
  /** Sessions that hostile traffic may target (valid traffic uses its own). */
  sessions: string[];
}

/** The operations of the OpenAPI document, with their request body schemas. */
export function operationsOf(doc: Schema): Operation[] {
  const out: Operation[] = [];
  for (const [path, item] of Object.entries<Schema>(doc.paths ?? {})) {
    for (const [method, op] of Object.entries<Schema>(item)) {
      const content = op.requestBody?.content ?? {};
      out.push({ method: method.toUpperCase(), path, json: content['application/json']?.schema, multipart: content['multipart/form-data']?.schema });
    }
  }
  return out;
}

function resolve(doc: Schema, s: Schema | undefined): Schema {
  let schema = s ?? {};
  for (let i = 0; i < 10 && typeof schema.$ref === 'string'; i++) {
    schema = schema.$ref.replace(/^#\//, '').split('/').reduce((o: Schema, k: string) => o?.[k], doc) ?? {};
  }
  return schema;
}

/** Values the server can act on for fields it knows, so generated bodies get past the first checks. */
function known(ctx: HostileContext, field: string): unknown {
  const { rng, fx } = ctx;
  switch (field) {
    case 'image':
      return rng.chance(0.7) ? rng.pick(fx.images).toString('base64') : rng.pick(fx.bad).bytes.toString('base64');
    case 'video_path':
      return rng.chance(0.5) ? fx.videoPath : rng.pick(PATH_ESCAPES);
    case 'text':
      return rng.pick(['cat', 'person', '', ' ', 'x'.repeat(1001), rng.text(20)]);
    default:
      return undefined;
  }
}

/** A random instance of a JSON schema: mostly valid, sometimes off by a little. */
export function fromSchema(ctx: HostileContext, schema: Schema | undefined, depth = 0, field = ''): unknown {
  const { rng, doc } = ctx;
  const s = resolve(doc, schema);
  const k = known(ctx, field);
  if (k !== undefined && rng.chance(0.85)) return k;
  if (depth > 6) return null;
  const alternatives = s.oneOf ?? s.anyOf;
  if (Array.isArray(alternatives) && alternatives.length > 0) return fromSchema(ctx, rng.pick(alternatives), depth + 1, field);
  if (Array.isArray(s.enum) && s.enum.length > 0) return rng.chance(0.9) ? rng.pick(s.enum) : rng.text(5);
  if (s.example !== undefined && rng.chance(0.3)) return s.example;
  const type = Array.isArray(s.type) ? rng.pick(s.type) : s.type;
  switch (type) {
    case 'object': {
      const out: Record<string, unknown> = {};
      const required = new Set<string>(s.required ?? []);
      for (const [name, prop] of Object.entries<Schema>(s.properties ?? {})) {
        if (required.has(name) || rng.chance(0.5)) out[name] = fromSchema(ctx, prop, depth + 1, name);
      }
      return out;
    }
    case 'array': {
      const min = s.minItems ?? 0;
      const max = Math.min(s.maxItems ?? min + 3, min + 3);
      return Array.from({ length: rng.int(min, Math.max(min, max)) }, () => fromSchema(ctx, s.items, depth + 1, field));
    }
    case 'integer':
    case 'number': {
      const lo = s.minimum ?? s.exclusiveMinimum ?? -10;
      const hi = s.maximum ?? s.exclusiveMaximum ?? 100;
      const v = lo + rng.next() * (hi - lo);
      return type === 'integer' ? Math.round(v) : v;
    }
    case 'boolean':
      return rng.chance(0.5);
    case 'null':
      return null;
    case 'string':
      return rng.chance(0.5) ? rng.text(rng.int(0, 12)) : rng.pick(['a', 'abc', '0', 'mi_0123456789abcdef0123456789abcdef', 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855']);
    default:
      return rng.chance(0.5) ? junkValue(rng) : {};
  }
}

/** Breaks a value in place at a random spot: a junk value, a removed field, an unknown field. */
export function mutate(rng: Rng, value: unknown, rounds: number): unknown {
  let root = value;
  for (let r = 0; r < rounds; r++) {
    // Walk to a random container.
    let parent: any = undefined;
    let key: string | number | undefined;
    let at: any = root;
    for (let d = 0; d < 6 && at !== null && typeof at === 'object' && rng.chance(0.7); d++) {
      const keys: (string | number)[] = Array.isArray(at) ? at.map((_: unknown, i: number) => i) : Object.keys(at);
      if (keys.length === 0) break;
      parent = at;
      key = rng.pick(keys);
      at = at[key];
    }
    const choice = rng.int(0, 3);
    if (parent === undefined) root = choice === 0 ? junkValue(rng) : root;
    else if (choice === 0 && !Array.isArray(parent)) delete parent[key!];
    else if (choice === 1 && !Array.isArray(parent)) parent[rng.pick(['extra', 'Image', 'prompts ', '__proto', 'type'])] = junkValue(rng);
    else parent[key!] = junkValue(rng);
  }
  return root;
}

const PATH_ESCAPES = [
  '../outside.mp4',
  '../../../../etc/passwd',
  '/etc/passwd',
  '/proc/self/environ',
  'clips/../../x.mp4',
  '..\\..\\windows\\win.ini',
  'clips/%2e%2e/%2e%2e/x.mp4',
  'clips/clip.mp4\u0000.txt',
  '~/.ssh/id_rsa',
  '//server/share/x.mp4',
  'file:///etc/passwd',
  'concat:clips/clip.mp4|/etc/passwd',
  'clips',
  '.',
  '',
  ' ',
  `clips/${'a'.repeat(300)}.mp4`,
  `${'ab/'.repeat(1400)}x.mp4`,
  'x'.repeat(5000),
  'not-a-video.mp4',
  'clips/clip.mp4/..',
];

const URL_ESCAPES = [
  '/docs/..%2Fpackage.json',
  '/docs/%2e%2e/%2e%2e/etc/passwd',
  '/docs/..%5c..%5cpackage.json',
  '/docs/swagger-ui.css%00.js',
  '/api/v1/video/session/..%2F..%2Fhealth/status',
  '/api/v1/video/session/%zz/status',
  '/api/v1/video/session/a%00b/status',
  `/api/v1/video/session/${'x'.repeat(3000)}/status`,
  '//api/v1/image/segment',
  '/api/v1/image/segment/',
  '/api/v1/image/segment?image=x&prompts=y',
  '/API/V1/IMAGE/SEGMENT',
  '/api/v1/video/session/%E2%80%AE/object/1',
  '/api/v1/video/session/s/object/99999999999999999999',
  '/api/v1/video/session/s/object/-1',
  '/api/v1/video/session/s/concept/1e3',
  '/%2e%2e/%2e%2e/etc/passwd',
  '/metrics/../health',
];

const METHODS = ['GET', 'POST', 'PUT', 'PATCH', 'DELETE', 'HEAD', 'OPTIONS', 'LINK', 'UNLINK', 'PURGE', 'PROPFIND', 'SEARCH', 'REPORT', 'MKCOL'];

/** encodeURIComponent, lone surrogates (which it refuses) replaced. */
export function uri(value: unknown): string {
  try {
    return encodeURIComponent(String(value));
  } catch {
    return encodeURIComponent(String(value).replace(/[\ud800-\udfff]/g, '?'));
  }
}

function concretePath(ctx: HostileContext, template: string): string {
  const { rng } = ctx;
  return template.replace(/\{(\w+)\}/g, (_m, name: string) => {
    if (name === 'session_id') return rng.chance(0.7) && ctx.sessions.length > 0 ? rng.pick(ctx.sessions) : uri(rng.pick(['nope', 'x'.repeat(70), '..', rng.text(8), 'a.b']));
    if (name === 'obj_id' || name === 'concept_id') return uri(String(rng.pick([0, 1, 2, -1, 1e21, 'abc', 2 ** 31])));
    return uri(rng.pick(['swagger-ui.css', 'index.html', '..', 'x'.repeat(300), rng.text(6)]));
  });
}

const jsonHeaders = { 'content-type': 'application/json' };

let bomb: Buffer | undefined;
/** 40 KB of gzip that inflates to 40 MB of JSON (made once). */
function gzipBomb(): Buffer {
  return (bomb ??= zlib.gzipSync(Buffer.concat([Buffer.from('{"image": "'), Buffer.alloc(40 * 1024 * 1024, 'A'), Buffer.from('"}')]), { level: 9 }));
}
type Case = (ctx: HostileContext) => HttpRequest;

function jsonOps(ctx: HostileContext): Operation[] {
  return ctx.ops.filter((o) => o.json);
}

/** The hostile cases, by name; the fuzzer picks among them uniformly. */
export const HOSTILE_CASES: Record<string, Case> = {
  'schema-json'(ctx) {
    const op = ctx.rng.pick(jsonOps(ctx));
    const body = mutate(ctx.rng, fromSchema(ctx, op.json), ctx.rng.int(0, 3));
    return { name: `schema-json ${op.method} ${op.path}`, method: op.method, path: concretePath(ctx, op.path), headers: jsonHeaders, body: JSON.stringify(body) ?? 'null' };
  },

  'schema-multipart'(ctx) {
    const { rng } = ctx;
    const op = rng.pick(ctx.ops.filter((o) => o.multipart));
    const schema = resolve(ctx.doc, op.multipart);
    const form = new FormData();
    for (const [name, prop] of Object.entries<Schema>(schema.properties ?? {})) {
      if (!rng.chance(0.8)) continue;
      const p = resolve(ctx.doc, prop);
      if (p.format === 'binary') {
        const bytes = rng.pick([rng.pick(ctx.fx.images), rng.pick(ctx.fx.bad).bytes, ctx.fx.video, rng.bytes(rng.int(0, 2000))]);
        form.append(rng.chance(0.9) ? name : rng.pick(['file', 'image', 'upload', 'x']), new Blob([new Uint8Array(bytes)]), rng.pick(['a.png', 'clip.mp4', '../../evil.mp4', 'x', '.mp4', 'a.MP4', 'a.exe', `${'n'.repeat(300)}.mp4`]));
      } else {
        const v = mutate(rng, fromSchema(ctx, p, 0, name), rng.int(0, 1));
        form.append(name, typeof v === 'string' ? v : JSON.stringify(v) ?? '');
      }
    }
    if (rng.chance(0.3)) form.append(rng.pick(['prompts', 'extra', 'image']), rng.text(10));
    return { name: `schema-multipart ${op.path}`, method: op.method, path: concretePath(ctx, op.path), body: form };
  },

  'bad-base64'(ctx) {
    const { rng } = ctx;
    const good = rng.pick(ctx.fx.images).toString('base64');
    const image = rng.pick([
      'not base64!',
      'abcde',
      '====',
      `${good}!`,
      `${good.slice(0, -3)}`,
      `data:image/png,${good}`,
      `data:text/html;base64,${good}`,
      `data:;base64,${good}`,
      `data:image/png;base64,`,
      `${good.slice(0, 10)}\u0000${good.slice(10)}`,
      ` \n\t${good}\n `,
      good.replace(/\+/g, '-').replace(/\//g, '_'),
      rng.text(50),
      'A'.repeat(rng.int(1, 100) * 4 + 1),
    ]);
    return { name: 'bad-base64', method: 'POST', path: rng.pick(['/api/v1/image/segment', '/api/v1/image/embed', '/api/v1/image/interactive']), headers: jsonHeaders, body: JSON.stringify({ image, prompts: [{ type: 'text', text: 'a' }], points: [{ point: [0.5, 0.5], label: 1 }] }) };
  },

  'bad-image'(ctx) {
    const { rng } = ctx;
    const bad = rng.pick(ctx.fx.bad);
    const path = rng.pick(['/api/v1/image/segment', '/api/v1/image/embed', '/api/v1/image/interactive', '/api/v1/image/batch']);
    const item = { image: bad.bytes.toString('base64'), prompts: [{ type: 'text', text: 'a' }] };
    const body = path.endsWith('batch') ? { images: [item, { ...item, image: rng.pick(ctx.fx.images).toString('base64') }] } : { ...item, points: [{ point: [0.5, 0.5], label: 1 }] };
    return { name: `bad-image ${bad.name}`, method: 'POST', path, headers: jsonHeaders, body: JSON.stringify(body) };
  },

  'bad-multipart'(ctx) {
    const { rng } = ctx;
    const boundary = 'XyZ';
    const png = rng.pick(ctx.fx.images);
    const part = (headers: string, body: string | Buffer) => Buffer.concat([Buffer.from(`--${boundary}\r\n${headers}\r\n\r\n`), Buffer.from(body), Buffer.from('\r\n')]);
    const variants: [string, Buffer, string][] = [
      ['empty-name', Buffer.concat([part('Content-Disposition: form-data; name=""', 'x'), Buffer.from(`--${boundary}--\r\n`)]), `multipart/form-data; boundary=${boundary}`],
      ['no-disposition', Buffer.concat([part('Content-Type: text/plain', 'x'), Buffer.from(`--${boundary}--\r\n`)]), `multipart/form-data; boundary=${boundary}`],
      ['no-boundary', part('Content-Disposition: form-data; name="prompts"', '[]'), 'multipart/form-data'],
      ['wrong-boundary', part('Content-Disposition: form-data; name="prompts"', '[]'), 'multipart/form-data; boundary=other'],
      ['unterminated', part('Content-Disposition: form-data; name="image"; filename="a.png"', png.subarray(0, 100)), `multipart/form-data; boundary=${boundary}`],
      ['two-files', Buffer.concat([part('Content-Disposition: form-data; name="image"; filename="a.png"', png), part('Content-Disposition: form-data; name="image"; filename="b.png"', png), Buffer.from(`--${boundary}--\r\n`)]), `multipart/form-data; boundary=${boundary}`],
      ['many-parts', Buffer.concat([...Array.from({ length: 60 }, (_, i) => part(`Content-Disposition: form-data; name="f${i}"`, 'v')), Buffer.from(`--${boundary}--\r\n`)]), `multipart/form-data; boundary=${boundary}`],
      ['repeated-field', Buffer.concat([part('Content-Disposition: form-data; name="prompts"', '[{"type":"text","text":"a"}]'), part('Content-Disposition: form-data; name="prompts"', '[]'), part('Content-Disposition: form-data; name="image"; filename="a.png"', png), Buffer.from(`--${boundary}--\r\n`)]), `multipart/form-data; boundary=${boundary}`],
      ['huge-field', Buffer.concat([part('Content-Disposition: form-data; name="prompts"', 'x'.repeat(1_200_000)), Buffer.from(`--${boundary}--\r\n`)]), `multipart/form-data; boundary=${boundary}`],
      ['header-junk', Buffer.concat([part(`Content-Disposition: form-data; name="image"; filename="${'\u00ff'.repeat(10)}"\r\nContent-Type: ${rng.text(10)}`, png), Buffer.from(`--${boundary}--\r\n`)]), `multipart/form-data; boundary=${boundary}`],
      ['random', rng.bytes(rng.int(0, 3000)), `multipart/form-data; boundary=${boundary}`],
      ['file-as-field', Buffer.concat([part('Content-Disposition: form-data; name="file"', 'not a file'), Buffer.from(`--${boundary}--\r\n`)]), `multipart/form-data; boundary=${boundary}`],
    ];
    const [name, body, type] = rng.pick(variants);
    const path = rng.pick(['/api/v1/image/segment', '/api/v1/image/cached-features', '/api/v1/image/embed', '/api/v1/video/upload']);
    return { name: `bad-multipart ${name}`, method: 'POST', path, headers: { 'content-type': type }, body: new Uint8Array(body) };
  },

  'path-escape-body'(ctx) {
    const { rng } = ctx;
    const body = rng.chance(0.8) ? { video_path: rng.pick(PATH_ESCAPES) } : { video_id: rng.pick(['../x', '00000000-0000-0000-0000-000000000000', rng.text(36), 'a'.repeat(1000)]) };
    return { name: 'path-escape-body', method: 'POST', path: '/api/v1/video/session/start', headers: jsonHeaders, body: JSON.stringify(body) };
  },

  'path-escape-url'(ctx) {
    const { rng } = ctx;
    return { name: 'path-escape-url', method: rng.pick(['GET', 'POST', 'DELETE']), path: rng.pick(URL_ESCAPES), headers: jsonHeaders, body: undefined };
  },

  'odd-method'(ctx) {
    const { rng } = ctx;
    const op = rng.pick(ctx.ops);
    return { name: 'odd-method', method: rng.pick(METHODS), path: concretePath(ctx, op.path) };
  },

  'odd-headers'(ctx) {
    const { rng } = ctx;
    const op = rng.pick(jsonOps(ctx));
    const body = JSON.stringify(fromSchema(ctx, op.json));
    const variant = rng.int(0, 7);
    const headers: Record<string, string> = { 'content-type': 'application/json' };
    let payload: string | Uint8Array = body;
    if (variant === 0) headers['content-encoding'] = rng.pick(['zstd', 'bogus', 'GZIP', 'gzip, gzip', 'x'.repeat(100), 'compress', 'identity, gzip', '']);
    else if (variant === 1) {
      headers['content-encoding'] = rng.pick(['gzip', 'deflate', 'br']);
      payload = rng.pick([Buffer.from(body), zlib.gzipSync(body).subarray(0, 12), rng.bytes(50), zlib.brotliCompressSync(body).subarray(1)]);
    } else if (variant === 2) headers['content-type'] = rng.pick(['text/plain', 'application/x-www-form-urlencoded', 'application/json; charset=utf-16', 'application/json; charset=latin1', 'application/vnd.api+json', 'application/xml', '*/*', 'application/json;;;', rng.text(8).replace(/[^\x20-\x7e]/g, 'x')]);
    else if (variant === 3) delete headers['content-type'];
    else if (variant === 4) headers['x-request-id'] = rng.pick(['x'.repeat(500), '../../etc', 'a b', '\u00ff\u00fe']);
    else if (variant === 5) headers.accept = rng.pick(['image/png', 'text/html', '*/*;q=0', 'application/json;q=abc']);
    else if (variant === 6) headers['content-encoding'] = 'gzip';
    else payload = Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), Buffer.from(body)]);
    if (variant === 6) payload = gzipBomb();
    return { name: `odd-headers ${variant}`, method: op.method, path: concretePath(ctx, op.path), headers, body: typeof payload === 'string' ? payload : new Uint8Array(payload) };
  },

  'odd-json'(ctx) {
    const { rng } = ctx;
    const op = rng.pick(jsonOps(ctx));
    const variants: [string, () => string | Uint8Array][] = [
      ['empty', () => ''],
      ['null', () => 'null'],
      ['array', () => '[]'],
      ['string', () => '"hello"'],
      ['number', () => '123'],
      ['truncated', () => JSON.stringify(fromSchema(ctx, op.json)).slice(0, -1)],
      ['nan-literal', () => invalidJsonNumberText(rng, rng.pick(['confidence_threshold', 'frame_index', 'max_frames', 'threshold']))],
      ['proto', () => rng.pick(['{"__proto__": {"polluted": 1}}', '{"constructor": {"prototype": {"polluted": 1}}}', '{"prompts": [{"__proto__": {"type": "text"}}]}'])],
      ['deep', () => '['.repeat(rng.int(65, 200_000)) + ']'.repeat(10)],
      ['deep-object', () => '{"a":'.repeat(rng.int(65, 5000)) + '1' + '}'.repeat(5000)],
      ['many-values', () => `{"prompts": [${'1,'.repeat(rng.int(200_001, 400_000))}1]}`],
      ['duplicate-keys', () => '{"prompts": [], "prompts": [{"type": "text", "text": "a"}], "image": "x", "image": ""}'],
      ['lone-surrogate', () => '{"prompts": [{"type": "text", "text": "\\ud800"}]}'],
      ['invalid-utf8', () => new Uint8Array([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x3a, 0x31, 0x7d])],
      ['huge-number', () => `{"frame_index": 1${'0'.repeat(400)}, "confidence_threshold": 1e-400, "max_frames": -0}`],
      ['comments', () => '{/* c */ "prompts": []}'],
    ];
    const [name, make] = rng.pick(variants);
    return { name: `odd-json ${name}`, method: op.method, path: concretePath(ctx, op.path), headers: jsonHeaders, body: make() };
  },

  'wrong-types'(ctx) {
    const { rng } = ctx;
    // A body valid in shape, one field replaced by junk.
    const image = rng.pick(ctx.fx.images).toString('base64');
    const bodies: [string, Record<string, unknown>][] = [
      ['/api/v1/image/segment', { image, prompts: [{ type: 'text', text: 'a' }, { type: 'box', box: [0.1, 0.1, 0.2, 0.2], label: true }], confidence_threshold: 0.5 }],
      ['/api/v1/image/cached-features', { image, text_prompts: ['a', 'b'] }],
      ['/api/v1/image/interactive', { image, points: [{ point: [0.5, 0.5], label: 1 }], box: [0.1, 0.1, 0.5, 0.5], multimask_output: true }],
      ['/api/v1/image/batch', { images: [{ image, prompts: [{ type: 'text', text: 'a' }] }] }],
      ['/api/v1/video/session/start', { video_path: ctx.fx.videoPath, gpu_ids: [0] }],
      ['/api/v1/video/session/{session_id}/prompt', { frame_index: 0, prompts: [{ type: 'point', point: [0.5, 0.5], label: 1 }], obj_id: 1 }],
      ['/api/v1/video/session/{session_id}/propagate', { direction: 'forward', start_frame_index: 0, max_frames: 2 }],
    ];
    const [template, body] = rng.pick(bodies);
    const keys = Object.keys(body);
    const key = rng.pick(keys);
    body[key] = rng.chance(0.5) ? junkValue(rng) : mutate(rng, body[key], 1);
    return { name: `wrong-types ${template} .${key}`, method: 'POST', path: concretePath(ctx, template), headers: jsonHeaders, body: JSON.stringify(body) };
  },

  'big-body'(ctx) {
    const { rng } = ctx;
    const size = rng.pick([2 * 1024 * 1024, 26 * 1024 * 1024]);
    const nested = rng.chance(0.5);
    const body = nested ? '['.repeat(size / 2) + ']'.repeat(size / 2) : JSON.stringify({ image: 'A'.repeat(size) });
    return { name: `big-body ${nested ? 'nested' : 'flat'} ${size >> 20} MB`, method: 'POST', path: rng.pick(['/api/v1/image/segment', '/api/v1/video/session/start']), headers: jsonHeaders, body };
  },
};
