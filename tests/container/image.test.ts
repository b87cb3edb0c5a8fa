/**
 * The CPU image, built and run with podman on this machine (`npm run test:container`, part of
 * `npm test`). No registry is reachable here, so the base image is bootstrapped from Debian's mirror
 * with mmdebstrap (bookworm minbase, cached by month in ~/.cache/sam3-container) and stands in for
 * debian:bookworm-slim; the Node.js image is this machine's own node and npm (the official image's
 * layout, /usr/local); the torch wheel comes from wherever pip finds it (a local folder here) through
 * the `wheels` build context with --no-index; extra CA certificates of an HTTPS proxy go in through
 * the `certs` context (builder only). npm packages come from the registry during the build.
 *
 * The container then serves a tiny bundle (mounted read-only) as a non-root user with the server
 * as PID 1: /health and the HEALTHCHECK, a segment request, an upload to the /data volume, a video
 * session prompted and propagated over REST and WebSocket, and `podman stop` (SIGTERM) ending in a
 * clean exit 0 well before the kill.
 *
 * Needs podman and mmdebstrap (apt-get install podman buildah runc mmdebstrap). Without them the
 * test is skipped, unless SAM3_REQUIRE_DEPLOY_TOOLS=1 (CI sets it), when it fails.
 */
import assert from 'node:assert/strict';
import { readdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { fixture, python, root, tempDir } from '../helpers.js';
import { baseImage, build, certsContext, configurePodman, exerciseServer, freePort, attempt, nodeImage, run, skipWithoutTools, stopCleanly, waitHealthy } from './podman.js';

const TAG = 'localhost/sam3-server:test';

describe('the CPU image (podman)', { skip: skipWithoutTools(), timeout: 45 * 60_000 }, () => {
  let dir: string;
  let name: string;

  before(async () => {
    dir = await tempDir('sam3-container-');
    await configurePodman(dir);
  });

  after(async () => {
    if (name) attempt('podman', ['rm', '-f', '-t', '0', name]);
    // The image and the build's layers stay: the next run builds only what changed. (Older layers
    // pile up in podman's storage; `podman image prune` clears the untagged ones.)
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds from Dockerfile with a local torch wheel', async (t) => {
    const t0 = Date.now();
    const baseTag = baseImage();
    const nodeTag = await nodeImage(dir);
    t.diagnostic(`base and node images: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    // The torch wheel from where pip finds it (here a local folder; elsewhere the index).
    const wheels = path.join(dir, 'wheels');
    run(python, ['-m', 'pip', 'download', '--retries', '0', '--no-deps', '--only-binary=:all:', '-d', wheels, 'torch==2.13.0'], { timeout: 600_000 });
    t.diagnostic(`wheels: ${(await readdir(wheels)).join(', ')}`);
    const certs = await certsContext(dir);
    const t1 = Date.now();
    await build(
      [
        '-f', path.join(root, 'Dockerfile'),
        '--build-arg', `BUILD_BASE=${baseTag}`, '--build-arg', `RUNTIME_BASE=${baseTag}`, '--build-arg', `NODE_IMAGE=${nodeTag}`,
        '--build-arg', 'TORCH_PIP_ARGS=--no-index',
        '--build-context', `wheels=${wheels}`, '--build-context', `certs=${certs}`,
        '-t', TAG, root,
      ],
      path.join(dir, 'build.log'),
    );
    const size = Number(run('podman', ['image', 'inspect', '--format', '{{.Size}}', TAG]));
    t.diagnostic(`build: ${((Date.now() - t1) / 1000).toFixed(0)} s; image size ${(size / 1e6).toFixed(0)} MB`);
    const labels = JSON.parse(run('podman', ['image', 'inspect', '--format', '{{json .Config.Labels}}', TAG])) as Record<string, string>;
    assert.equal(labels['org.opencontainers.image.title'], 'sam3-server');
    assert.equal(labels['io.sam3.device'], 'cpu');
  });

  it('serves a tiny bundle as a non-root PID 1: health, segment, video over REST and WebSocket', async () => {
    // The test suite's tiny bundle (same kind as models/demo, always of the current bundle format).
    const { bundle } = await fixture();
    const port = await freePort();
    name = `sam3-test-${process.pid}`;
    run('podman', [
      'run', '-d', '--name', name, '-p', `127.0.0.1:${port}:8000`,
      '-v', `${bundle}:/models/sam3:ro`,
      '-e', 'ENGINE_THREADS=2', '-e', 'IMAGE_MODEL_WARMUP=false',
      TAG,
    ]);
    const base = `http://127.0.0.1:${port}`;
    await waitHealthy(base, name);
    assert.equal(attempt('podman', ['healthcheck', 'run', name]).status, 0, 'the HEALTHCHECK passes');
    assert.equal(run('podman', ['exec', name, 'id', '-u']), '10001', 'not root');
    assert.equal(run('podman', ['exec', name, 'cat', '/proc/1/cmdline']).replaceAll('\0', ' ').trim(), 'node dist/server/main.js', 'the server is PID 1');
    await exerciseServer(base, dir);
  });

  it('stops cleanly on SIGTERM (podman stop): exit 0, shut down in the log, before the kill', (t) => {
    t.diagnostic(`podman stop took ${stopCleanly(name).toFixed(1)} s`);
  });
});
