/**
 * Operations endpoints and lifecycle: /health while loading and when ready, /models/info, /metrics
 * in Prometheus format with every family the issue lists, Swagger UI at /docs, a valid OpenAPI
 * document that covers every route, and graceful shutdown (in-process and of `npm start`'s entry
 * on SIGTERM).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, describe, it } from 'node:test';

import SwaggerParser from '@apidevtools/swagger-parser';
import { Ajv2020 } from 'ajv/dist/2020.js';

import { ERROR_STATUS } from '../src/server/core/errors.js';
import { UNDOCUMENTED_ROUTES } from '../src/server/ops/openapi.js';

import { pngImage, root } from './helpers.js';
import { type TestServer, b64, get, metric, metrics, postJson, startServer } from './server-helpers.js';

const text = (t: string) => ({ type: 'text', text: t });

describe('operations endpoints', () => {
  let srv: TestServer;
  before(async () => {
    srv = await startServer({}, { wait: false });
  });
  after(async () => srv?.close());

  it('/health is 503 "loading" until the model is loaded, then 200 "healthy"', async () => {
    const loading = await get(srv.base, '/health');
    assert.equal(loading.status, 503);
    assert.equal(loading.body.status, 'loading');
    assert.equal(loading.body.model_loaded, false);
    const early = await postJson(srv.base, '/api/v1/image/segment', { image: b64(await pngImage(32, 32)), prompts: [text('a')] });
    assert.equal(early.status, 503);
    assert.equal(early.body.error.code, 'model_loading');
    assert.ok(early.headers.get('retry-after'));
    await srv.svc.ready;
    const ready = await get(srv.base, '/health');
    assert.equal(ready.status, 200);
    assert.deepEqual(Object.keys(ready.body).sort(), ['active_sessions', 'devices', 'gpu_available', 'gpu_count', 'model_loaded', 'status', 'uptime_seconds']);
    assert.equal(ready.body.status, 'healthy');
    assert.equal(typeof ready.body.gpu_available, 'boolean');
    assert.equal(typeof ready.body.gpu_count, 'number');
    assert.equal(ready.body.active_sessions, 0);
    assert.deepEqual(ready.body.devices, ['cpu']);
  });

  it('/models/info describes the bundle, devices, resolution, dtype, caches and limits', async () => {
    const r = await get(srv.base, '/models/info');
    assert.equal(r.status, 200);
    const m = r.body.image_model;
    assert.equal(m.bundle, srv.bundle);
    assert.equal(m.resolution, 112);
    assert.equal(m.dtype, 'float32');
    assert.equal(m.manifest.format, 'sam3-bundle');
    const tracker = ['memory_attention', 'memory_encoder', 'memory_encoder_points', 'tracker_decode_multi', 'tracker_decode_single', 'tracker_interactive_multi', 'tracker_interactive_single', 'tracker_mask_prompt', 'tracker_neck'];
    assert.deepEqual(Object.keys(m.manifest.files).sort(), ['head_text', 'head_text_boxes', 'pixel_decoder', 'pixel_skip', 'pixel_split', 'text_encoder', 'tokenizer', 'vision_backbone', 'vision_neck', ...tracker].sort());
    assert.equal(r.body.video.supported, true, 'the fixture is a sam3_video checkpoint: its bundle has the tracker');
    assert.equal(m.devices[0].device, 'cpu');
    assert.equal(m.devices[0].threads, 2);
    assert.equal(r.body.feature_cache.enabled, true);
    assert.equal(r.body.feature_cache.ttl_seconds, 600);
    assert.equal(typeof r.body.text_cache.hits, 'number');
    assert.deepEqual(r.body.batching, { max_batch_size: null, batch_wait_ms: 5, max_queue_size: 64 });
    assert.equal(m.devices[0].max_batch_size, 1, 'a CPU engine encodes one image a pass by default');
    assert.equal(r.body.limits.max_image_pixels, 40_000_000);
  });

  it('/metrics has requests and latency per route and status, queues, batches, caches, stages and memory', async () => {
    const image = b64(await pngImage(40, 40, 1));
    await postJson(srv.base, '/api/v1/image/segment', { image, prompts: [text('person'), text('car')] });
    await postJson(srv.base, '/api/v1/image/segment', { image, prompts: [text('person')] });
    await postJson(srv.base, '/api/v1/image/segment', { image: 'bad!', prompts: [text('person')] });
    const res = await get(srv.base, '/metrics');
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0.0.4/);
    const m = res.text;
    assert.equal(metric(m, 'sam3_http_requests_total', { route: '/api/v1/image/segment', status: '200', method: 'POST' }), 2);
    assert.equal(metric(m, 'sam3_http_requests_total', { route: '/api/v1/image/segment', status: '400' }), 1);
    assert.equal(metric(m, 'sam3_http_request_duration_seconds_count', { route: '/api/v1/image/segment', status: '200' }), 2);
    assert.equal(metric(m, 'sam3_encode_queue_depth', { device: 'cpu#0' }), 0);
    assert.equal(metric(m, 'sam3_encode_batch_size_sum', { device: 'cpu#0' }), 1);
    assert.equal(metric(m, 'sam3_feature_cache_hits_total', { device: 'cpu#0' }), 1);
    assert.equal(metric(m, 'sam3_feature_cache_misses_total', { device: 'cpu#0' }), 1);
    assert.equal(metric(m, 'sam3_feature_cache_evictions_total', { device: 'cpu#0' }), 0);
    assert.ok((metric(m, 'sam3_feature_cache_bytes') ?? 0) > 0);
    // The cached features live on the native heap, so it holds at least their bytes.
    assert.ok((metric(m, 'sam3_native_heap_bytes', { state: 'in_use' }) ?? 0) >= metric(m, 'sam3_feature_cache_bytes')!);
    assert.ok((metric(m, 'sam3_native_heap_bytes', { state: 'free' }) ?? -1) >= 0);
    assert.equal(metric(m, 'sam3_text_cache_misses_total'), 2, 'person and car encoded once each');
    assert.equal(metric(m, 'sam3_text_cache_hits_total'), 1);
    for (const stage of ['decode', 'queue_wait', 'encode', 'head']) assert.ok((metric(m, 'sam3_inference_stage_seconds_count', { stage }) ?? 0) >= 1, stage);
    assert.ok((metric(m, 'process_resident_memory_bytes') ?? 0) > 0);
    assert.ok((metric(m, 'nodejs_heap_size_used_bytes') ?? 0) > 0);
    assert.equal(metric(m, 'sam3_model_ready'), 1);
    assert.match(m, /# TYPE sam3_feature_cache_hits_total counter/);
  });

  it('/docs serves Swagger UI from local files; only its own files', async () => {
    const page = await get(srv.base, '/docs');
    assert.equal(page.status, 200);
    assert.match(page.headers.get('content-type') ?? '', /text\/html/);
    assert.match(page.text, /SwaggerUIBundle\(\{\s*url: '\/openapi.json'/);
    const js = await fetch(`${srv.base}/docs/swagger-ui-bundle.js`);
    assert.equal(js.status, 200);
    assert.match(js.headers.get('content-type') ?? '', /javascript/);
    assert.ok((await js.arrayBuffer()).byteLength > 100_000);
    assert.equal((await get(srv.base, '/docs/swagger-ui.css')).status, 200);
    assert.equal((await get(srv.base, '/docs/package.json')).status, 404);
    assert.equal((await get(srv.base, '/docs/..%2Fpackage.json')).status, 404);
  });

  it('/openapi.json is a valid OpenAPI 3.1 document covering every route with its methods', async () => {
    const r = await get(srv.base, '/openapi.json');
    assert.equal(r.status, 200);
    const doc = r.body;
    assert.equal(doc.openapi, '3.1.0');
    await SwaggerParser.validate(structuredClone(doc));
    const documented = new Set<string>();
    for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, unknown>>)) for (const method of Object.keys(ops)) documented.add(`${method.toUpperCase()} ${p}`);
    const served = new Set<string>();
    for (const mw of srv.svc.app.middleware as unknown as { router?: { stack: { path: string; methods: string[] }[] } }[]) {
      for (const layer of mw.router?.stack ?? []) {
        for (const method of layer.methods) if (method !== 'HEAD') served.add(`${method} ${layer.path.replace(/:(\w+)/g, '{$1}')}`);
      }
    }
    assert.ok(served.size >= 10, [...served].join(', '));
    for (const hidden of UNDOCUMENTED_ROUTES) {
      assert.ok(served.delete(hidden), `${hidden} is served`);
      assert.ok(!documented.has(hidden), `${hidden} is left out of the document`);
    }
    assert.deepEqual([...served].sort(), [...documented].sort());
    for (const p of ['/api/v1/image/segment', '/api/v1/image/cached-features', '/api/v1/image/embed', '/api/v1/image/batch', '/api/v1/image/interactive']) {
      const op = doc.paths[p].post;
      assert.ok(op.requestBody.content['application/json'].schema, p);
      for (const status of ['200', '400', '500', '503']) assert.ok(op.responses[status], `${p} documents ${status}`);
    }
    const segment = doc.components.schemas.SegmentRequest;
    assert.deepEqual(Object.keys(segment.properties).sort(), ['confidence_threshold', 'image', 'image_id', 'mask_format', 'prompts']);
    const interactive = doc.components.schemas.InteractiveRequest;
    assert.deepEqual(Object.keys(interactive.properties).sort(), ['box', 'image', 'image_id', 'mask_format', 'mask_input', 'multimask_output', 'objects', 'points']);
    assert.equal(interactive.additionalProperties, false);
    for (const id of ['PolygonMask', 'PngMask', 'InteractiveResponse']) assert.ok(doc.components.schemas[id], `${id} is documented`);
    assert.equal(segment.additionalProperties, false);
    assert.ok(doc.paths['/api/v1/image/segment'].post.requestBody.content['multipart/form-data']);
  });

  it('every operation has an operationId, unique across the document (client generators name methods by it)', async () => {
    const doc = (await get(srv.base, '/openapi.json')).body;
    const ids: string[] = [];
    for (const [p, ops] of Object.entries(doc.paths as Record<string, Record<string, { operationId?: unknown }>>)) {
      for (const [method, op] of Object.entries(ops)) {
        assert.equal(typeof op.operationId, 'string', `${method.toUpperCase()} ${p} has an operationId`);
        assert.match(op.operationId as string, /^[a-z][A-Za-z0-9]*$/, `${method.toUpperCase()} ${p}: camelCase`);
        ids.push(op.operationId as string);
      }
    }
    assert.ok(ids.length >= 20, ids.join(', '));
    assert.deepEqual(ids.filter((id, i) => ids.indexOf(id) !== i), [], 'duplicate operationIds');
  });

  it('every example in the document is valid for its schema; error examples carry a code of their status; mask counts agree', async () => {
    const doc = (await get(srv.base, '/openapi.json')).body;
    const deref = (await SwaggerParser.dereference(structuredClone(doc))) as any;
    const ajv = new Ajv2020({ strict: false, allErrors: true });
    ajv.addKeyword({ keyword: 'example' });
    const check = (schema: unknown, example: unknown, where: string) => {
      const validate = ajv.compile(schema as object);
      assert.ok(validate(example), `${where}: ${JSON.stringify(validate.errors)}`);
    };
    // Codes answered with each status: the library's (ERROR_STATUS) and those only the HTTP edge raises.
    const statusOf = new Map<string, Set<number>>();
    const add = (code: string, status: number) => statusOf.set(code, new Set([...(statusOf.get(code) ?? []), status]));
    for (const m of Object.values(ERROR_STATUS)) add(m.code, m.status);
    for (const [code, status] of [['not_found', 404], ['method_not_allowed', 405], ['body_too_large', 413], ['unsupported_media_type', 415], ['wrong_replica', 421], ['upgrade_required', 426], ['unauthorized', 401], ['upload_too_large', 413], ['video_in_use', 409], ['invalid_json', 400], ['invalid_base64', 400], ['validation_error', 400], ['request_timeout', 408]] as const) add(code, status);
    let examples = 0;
    // Schema-level examples (what Swagger UI shows for a body) ...
    const walk = (schema: any, where: string, seen = new Set<unknown>()) => {
      if (!schema || typeof schema !== 'object' || seen.has(schema)) return;
      seen.add(schema);
      if ('example' in schema && schema.type === 'object') {
        check(schema, schema.example, where);
        examples++;
        const ex = schema.example;
        if (Array.isArray(ex.masks)) {
          assert.equal(ex.num_masks, ex.masks.length, `${where}: num_masks of the example`);
          assert.equal(ex.scores.length, ex.masks.length, `${where}: scores of the example`);
        }
      }
      for (const [k, v] of Object.entries(schema)) if (k !== 'example') walk(v, `${where}.${k}`, seen);
    };
    for (const [name, schema] of Object.entries(deref.components.schemas)) walk(schema, name);
    // ... and response examples.
    for (const [p, ops] of Object.entries(deref.paths as Record<string, Record<string, any>>)) {
      for (const [method, op] of Object.entries(ops)) {
        for (const [status, res] of Object.entries(op.responses as Record<string, any>)) {
          const media = res.content?.['application/json'];
          if (!media) continue;
          const where = `${method.toUpperCase()} ${p} ${status}`;
          const isError = Boolean(media.schema.properties?.error?.properties?.code);
          if (isError) assert.ok(media.example, `${where} has an example`);
          if (!media.example) continue;
          check(media.schema, media.example, where);
          examples++;
          const code = media.example.error?.code;
          if (isError) assert.ok(statusOf.get(code)?.has(Number(status)), `${where}: example code '${code}' is answered with ${[...(statusOf.get(code) ?? [])].join('/')}`);
        }
      }
    }
    assert.ok(examples > 60, `${examples} examples checked`);
    const segment = deref.paths['/api/v1/image/segment'].post.responses;
    assert.equal(segment['404'].content['application/json'].example.error.code, 'unknown_image_id');
    assert.equal(segment['200'].content['application/json'].schema.example.num_masks, 2);
  });
});

describe('graceful shutdown', () => {
  it('close() finishes in-flight requests, refuses new ones, then frees the model', async () => {
    const srv = await startServer({ BATCH_WAIT_MS: '600' });
    const image = b64(await pngImage(40, 40, 2));
    const inflight = postJson(srv.base, '/api/v1/image/segment', { image, prompts: [text('person')] });
    while (srv.svc.inflight() === 0) await new Promise((r) => setTimeout(r, 5));
    const closing = srv.svc.close();
    assert.equal(srv.svc.phase(), 'shutting_down');
    // The listener stays open while the request in flight runs: an answer, not a refused connection.
    const refused = await postJson(srv.base, '/api/v1/image/segment', { image, prompts: [text('person')] });
    assert.equal(refused.status, 503);
    assert.equal(refused.body.error.code, 'shutting_down');
    assert.equal(refused.headers.get('connection'), 'close');
    const done = await inflight;
    assert.equal(done.status, 200, done.text);
    assert.ok(done.body.num_masks >= 0);
    await closing;
    assert.equal(srv.svc.phase(), 'closed');
    assert.equal(srv.svc.pool(), undefined);
    assert.ok(srv.logs.some((l) => l.msg === 'shut down'));
    await assert.rejects(fetch(`${srv.base}/health`));
    await srv.svc.close(); // a second close is a no-op
  });

  it('close() while the model is still loading frees it once loaded', async () => {
    const srv = await startServer({}, { wait: false });
    await srv.svc.close();
    assert.equal(srv.svc.phase(), 'closed');
    await srv.svc.ready.catch(() => undefined);
    assert.equal(srv.svc.pool(), undefined);
  });

  it('the npm start entry stops on SIGTERM after answering the request in flight', async () => {
    const bundle = (await import('./helpers.js').then((h) => h.fixture())).bundle;
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'server', 'main.ts')], {
      cwd: root,
      env: { ...process.env, SAM3_CHECKPOINT: bundle, SERVER_PORT: '0', SERVER_HOST: '127.0.0.1', BATCH_WAIT_MS: '800', IMAGE_MODEL_WARMUP: 'false', LOG_LEVEL: 'info' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const lines: { msg?: string; port?: number }[] = [];
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
    const port = await new Promise<number>((resolve, reject) => {
      createInterface({ input: child.stdout }).on('line', (line) => {
        const entry = JSON.parse(line) as { msg?: string; port?: number };
        lines.push(entry);
        if (entry.msg?.startsWith('listening') && entry.port) resolve(entry.port);
      });
      void exited.then((code) => reject(new Error(`exited ${code}: ${stderr}`)));
    });
    const base = `http://127.0.0.1:${port}`;
    while ((await get(base, '/health')).status !== 200) await new Promise((r) => setTimeout(r, 50));
    const inflight = postJson(base, '/api/v1/image/segment', { image: b64(await pngImage(40, 40, 3)), prompts: [text('person')] });
    await new Promise((r) => setTimeout(r, 200));
    child.kill('SIGTERM');
    const done = await inflight;
    assert.equal(done.status, 200, done.text);
    assert.equal(await exited, 0, stderr);
    const msgs = lines.map((l) => l.msg);
    assert.ok(msgs.some((m) => m?.startsWith('signal received')), msgs.join(' | '));
    assert.ok(msgs.includes('shut down'));
  });

  it('the npm start entry exits 2 naming a bad configuration key', async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(root, 'src', 'server', 'main.ts')], {
      cwd: root,
      env: { ...process.env, SERVER_PORT: 'eighty', FEATURE_CACHE_TTL_SECONDS: '-5' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.on('exit', resolve));
    assert.equal(code, 2);
    assert.match(stderr, /SERVER_PORT="eighty": must be an integer/);
    assert.match(stderr, /FEATURE_CACHE_TTL_SECONDS="-5": must be a number > 0/);
  });
});

describe('metrics helper sanity', () => {
  it('reads labelled samples', () => {
    const text = '# HELP x y\nfoo_total{device="cpu#0",route="/a"} 3\nfoo_total{device="cpu#1",route="/a"} 4\nfoo 1\n';
    assert.equal(metric(text, 'foo_total'), 7);
    assert.equal(metric(text, 'foo_total', { device: 'cpu#1' }), 4);
    assert.equal(metric(text, 'foo'), 1);
  });
});


