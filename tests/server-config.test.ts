/**
 * Configuration: defaults, .env with the environment winning, every bad key named at once,
 * .env.example documenting exactly the keys the server reads; SAM3_CHECKPOINT as a bundle, a
 * Hugging Face checkpoint folder (exported once with the real exporter, then reused) or neither.
 */
import assert from 'node:assert/strict';
import { cpSync, existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, describe, it } from 'node:test';

import { pino } from 'pino';

import { CheckpointError, classifyCheckpoint, resolveBundle } from '../src/server/core/model-source.js';
import { CONFIG_KEYS, ConfigError, loadConfig } from '../src/server/core/config.js';
import { fixture, pngImage, root, tempDir } from './helpers.js';
import { type TestServer, b64, postJson, startServer } from './server-helpers.js';

describe('configuration', () => {
  it('defaults serve models/demo on port 8000', () => {
    const c = loadConfig({}, { envFile: false });
    assert.equal(c.checkpoint, 'models/demo');
    assert.equal(c.port, 8000);
    assert.equal(c.host, '0.0.0.0');
    assert.equal(c.confidenceThreshold, 0.5);
    assert.equal(c.devices, undefined);
    assert.deepEqual(c.featureCache, { enabled: true, ttlMs: 600_000, maxBytes: 2048 * 1024 * 1024, maxEntries: 256 });
    assert.deepEqual(c.batching, { maxBatchSize: undefined, batchWaitMs: 5, maxQueue: 64, retryAfterSeconds: 1 });
    assert.equal(c.limits.maxBodyBytes, 25 * 1024 * 1024);
    assert.equal(c.logLevel, 'info');
  });

  it('reads .env; the environment wins; spec-style values (LOG_LEVEL=INFO, booleans) are accepted', async () => {
    const dir = await tempDir('sam3-env-');
    const file = path.join(dir, '.env');
    writeFileSync(file, 'SERVER_PORT=9001\nLOG_LEVEL=INFO\nENABLE_FEATURE_CACHE=no\nIMAGE_MODEL_DEVICE=cpu\nFEATURE_CACHE_TTL_SECONDS=0.5\nDEVICES=\n');
    const c = loadConfig({ SERVER_PORT: '9002', UNRELATED: 'x' }, { envFile: file });
    assert.equal(c.port, 9002);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.featureCache.enabled, false);
    assert.equal(c.featureCache.ttlMs, 500);
    assert.deepEqual(c.devices, ['cpu']);
    assert.deepEqual(loadConfig({ DEVICES: 'cuda:0, cuda:1', IMAGE_MODEL_DEVICE: 'cpu' }, { envFile: false }).devices, ['cuda:0', 'cuda:1']);
  });

  it('names every bad key and what it must be', () => {
    assert.throws(
      () => loadConfig({ SERVER_PORT: 'eighty', LOG_LEVEL: 'loud', ENABLE_FEATURE_CACHE: 'maybe', DEVICES: 'gpu0', IMAGE_MODEL_CONFIDENCE_THRESHOLD: '1.5', MAX_BATCH_SIZE: '0' }, { envFile: false }),
      (err: unknown) => {
        assert.ok(err instanceof ConfigError);
        const msg = err.message;
        assert.match(msg, /SERVER_PORT="eighty": must be an integer/);
        assert.match(msg, /LOG_LEVEL="loud": must be one of fatal, error, warn, info, debug, trace, silent/);
        assert.match(msg, /ENABLE_FEATURE_CACHE="maybe": must be true or false/);
        assert.match(msg, /DEVICES="gpu0": must be a comma-separated list/);
        assert.match(msg, /IMAGE_MODEL_CONFIDENCE_THRESHOLD="1.5": must be a number <= 1/);
        assert.match(msg, /MAX_BATCH_SIZE="0": must be an integer >= 1/);
        return true;
      },
    );
  });

  it('.env.example documents exactly the keys the server reads, with valid values', () => {
    const example = readFileSync(path.join(root, '.env.example'), 'utf8');
    const keys = [...example.matchAll(/^([A-Z][A-Z0-9_]*)=/gm)].map((m) => m[1]!);
    assert.deepEqual([...keys].sort(), [...CONFIG_KEYS].sort());
    const c = loadConfig({}, { envFile: path.join(root, '.env.example') });
    assert.equal(c.port, 8000);
  });
});

describe('SAM3_CHECKPOINT', () => {
  const log = pino({ level: 'silent' });
  let srv: TestServer | undefined;
  after(async () => srv?.close());

  it('a bundle folder, a Hugging Face folder, a hub id, or a clear refusal', async () => {
    const fx = await fixture();
    assert.deepEqual(classifyCheckpoint(fx.bundle, root), { kind: 'bundle', dir: fx.bundle });
    assert.deepEqual(classifyCheckpoint(fx.checkpoint, root), { kind: 'hf-folder', dir: fx.checkpoint });
    assert.deepEqual(classifyCheckpoint('facebook/sam3', root), { kind: 'hub', id: 'facebook/sam3' });
    const empty = await tempDir('sam3-empty-');
    assert.throws(() => classifyCheckpoint(empty, root), (e: unknown) => e instanceof CheckpointError && /has neither manifest.json .* nor config.json/.test(e.message));
    assert.throws(() => classifyCheckpoint('./no/such/dir', root), (e: unknown) => e instanceof CheckpointError && /does not exist; name a model bundle folder/.test(e.message));
    const missingDemo = loadConfig({ SAM3_CHECKPOINT: 'models/demo' }, { envFile: false, root: empty });
    await assert.rejects(resolveBundle(missingDemo, ['cpu'], log), /the demo bundle is made by 'npm install'/);
  });

  it('a Hugging Face folder is exported once (progress in the log), served, and reused on the next start', async () => {
    const fx = await fixture();
    const work = await tempDir('sam3-export-');
    const checkpoint = path.join(work, 'tiny-sam3');
    cpSync(fx.checkpoint, checkpoint, { recursive: true });
    const exportDir = path.join(work, 'bundles');
    srv = await startServer({ SAM3_CHECKPOINT: checkpoint, SAM3_EXPORT_DIR: exportDir });
    const exported = srv.logs.find((l) => l.msg === 'export finished');
    assert.ok(exported, 'export finished is logged');
    const bundle = exported.bundle as string;
    assert.ok(bundle.startsWith(path.join(exportDir, 'tiny-sam3-cpu-float32-')));
    assert.ok(existsSync(path.join(bundle, 'manifest.json')));
    assert.ok(srv.logs.some((l) => l.exporter === true && /\[export_sam3\]/.test(l.msg)), 'the exporter output is in the log');
    const r = await postJson(srv.base, '/api/v1/image/segment', { image: b64(await pngImage(40, 32)), prompts: [{ type: 'text', text: 'person' }] });
    assert.equal(r.status, 200, r.text);
    await srv.close();

    srv = await startServer({ SAM3_CHECKPOINT: checkpoint, SAM3_EXPORT_DIR: exportDir });
    assert.ok(srv.logs.some((l) => l.msg === 'using the bundle exported from this checkpoint on an earlier start' && l.bundle === bundle));
    assert.ok(!srv.logs.some((l) => l.exporter === true));
  });

  it('a failed export stops the start with the exporter\'s reason', async () => {
    const work = await tempDir('sam3-badckpt-');
    writeFileSync(path.join(work, 'config.json'), '{"model_type": "bert"}');
    const config = loadConfig({ SAM3_CHECKPOINT: work, SAM3_EXPORT_DIR: path.join(work, 'out') }, { envFile: false });
    await assert.rejects(resolveBundle(config, ['cpu'], log), (e: unknown) => e instanceof CheckpointError && /^exporting .* failed \(exit \d+\): .+/.test(e.message));
  });
});
