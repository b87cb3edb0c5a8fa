/**
 * The CUDA image, built from Dockerfile.cuda and run with podman on a machine without a GPU
 * (`npm run test:container:cuda`; not part of `npm test`: it moves ~4 GB of CUDA libraries and
 * takes about as long as the rest of CI).
 *
 * What it proves: Dockerfile.cuda's stages build with a CUDA build of torch (the addon compiles
 * and links against libtorch_cuda with the CUDA toolkit in the builder, the nvidia-* libraries the
 * wheel names are installed and carried to the runtime, and libtorch_cuda finds every one of them
 * there); without a GPU it refuses to start by default, saying what to change, and serves on the
 * CPU when told to (IMAGE_MODEL_DEVICE=auto). What it cannot prove here: anything on a GPU (no
 * GPU, no NVIDIA container toolkit).
 *
 * No registry is reachable, so as in image.test.ts the bases are stand-ins: Debian bookworm
 * (mmdebstrap) for nvidia/cuda's -base image, and Debian plus the CUDA toolkit unpacked from
 * NVIDIA's pip wheels (nvcc, cudart, nvrtc, ...) for the -devel image. The torch wheel and its
 * nvidia-* wheels come from where pip finds them, as the `wheels` build context with --no-index.
 *
 * SAM3_CUDA_TORCH_VERSION picks the torch version (default: Dockerfile.cuda's TORCH_VERSION); pip
 * must be able to get a CUDA build of it (this workplace's machines have 2.14.1 in a local index;
 * their 2.13.0 is the CPU build).
 */
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { mkdir, readFile, readdir, rm, symlink, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';

import { fixture, python, root, tempDir } from '../helpers.js';
import { get } from '../server-helpers.js';
import { attempt, baseImage, build, certsContext, configurePodman, exerciseServer, freePort, imageExists, nodeImage, run, skipWithoutTools, stopCleanly, waitHealthy } from './podman.js';

const TAG = 'localhost/sam3-server:test-cuda';
const TOOLKIT_WHEELS = ['nvidia-cuda-nvcc', 'nvidia-cuda-runtime', 'nvidia-cuda-cccl', 'nvidia-cuda-crt', 'nvidia-nvvm', 'nvidia-cuda-nvrtc'];

async function dockerfileArg(name: string): Promise<string> {
  const m = new RegExp(`^ARG ${name}=(.*)$`, 'm').exec(await readFile(path.join(root, 'Dockerfile.cuda'), 'utf8'));
  assert.ok(m, `Dockerfile.cuda has ARG ${name}`);
  return m[1]!.replace(/^"|"$/g, '');
}

const pipDownload = (args: string[]) => run(python, ['-m', 'pip', 'download', '--retries', '0', '--only-binary=:all:', ...args], { timeout: 1_200_000 });

/**
 * Stands in for nvidia/cuda:<major.minor>-devel: the Debian base with the CUDA toolkit unpacked from
 * NVIDIA's wheels into /usr/local/cuda-<v> (the wheels' nvidia/cu<N>/ trees), nvcc on PATH.
 */
async function cudaDevelImage(base: string, cuda: string, dir: string): Promise<string> {
  const tag = `localhost/sam3-test-cuda-devel:${cuda}-${base.split(':').pop()}`;
  if (imageExists(tag)) return tag;
  const wheels = path.join(dir, 'toolkit-wheels');
  pipDownload(['--no-deps', '-d', wheels, ...TOOLKIT_WHEELS.map((w) => `${w}==${cuda}.*`)]);
  const ctx = path.join(dir, 'cuda-devel');
  const prefix = path.join(ctx, `cuda-${cuda}`);
  await mkdir(prefix, { recursive: true });
  for (const wheel of await readdir(wheels)) {
    const unpacked = path.join(dir, 'unpacked', wheel);
    run(python, ['-m', 'zipfile', '-e', path.join(wheels, wheel), unpacked]);
    const trees = (await readdir(path.join(unpacked, 'nvidia'))).filter((d) => /^cu\d+$/.test(d));
    assert.equal(trees.length, 1, `${wheel} has one nvidia/cuNN tree`);
    run('cp', ['-a', `${path.join(unpacked, 'nvidia', trees[0]!)}/.`, prefix]);
  }
  await rm(path.join(prefix, '.metadata'), { recursive: true, force: true });
  await symlink('lib', path.join(prefix, 'lib64'));
  // The -dev packages' unversioned names (libcudart.so, libnvrtc.so), which CMake looks for.
  for (const lib of await readdir(path.join(prefix, 'lib'))) {
    const m = /^(lib[\w-]+\.so)\.\d+$/.exec(lib);
    if (m && !existsSync(path.join(prefix, 'lib', m[1]!))) await symlink(lib, path.join(prefix, 'lib', m[1]!));
  }
  run('chmod', ['-R', 'a+rX,u+w', prefix]);
  run('sh', ['-c', `chmod a+x ${prefix}/bin/* ${prefix}/nvvm/bin/*`]);
  await writeFile(
    path.join(ctx, 'Containerfile'),
    `FROM ${base}\nCOPY cuda-${cuda} /usr/local/cuda-${cuda}\nRUN ln -s cuda-${cuda} /usr/local/cuda\nENV PATH=/usr/local/cuda/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n`,
  );
  await build(['-f', path.join(ctx, 'Containerfile'), '-t', tag, ctx], path.join(dir, 'cuda-devel.log'));
  await rm(path.join(dir, 'unpacked'), { recursive: true, force: true });
  return tag;
}

describe('the CUDA image (podman, no GPU)', { skip: skipWithoutTools(), timeout: 90 * 60_000 }, () => {
  let dir: string;
  let name: string;
  let torchVersion: string;

  before(async () => {
    dir = await tempDir('sam3-container-cuda-');
    await configurePodman(dir);
  });

  after(async () => {
    if (name) attempt('podman', ['rm', '-f', '-t', '0', name]);
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('builds from Dockerfile.cuda with a CUDA torch wheel and its nvidia-* wheels', async (t) => {
    torchVersion = process.env.SAM3_CUDA_TORCH_VERSION ?? (await dockerfileArg('TORCH_VERSION'));
    const wheels = path.join(dir, 'wheels');
    pipDownload(['--no-deps', '-d', wheels, `torch==${torchVersion}`]);
    const torchWheel = (await readdir(wheels)).find((f) => f.startsWith('torch-'))!;
    const requirements = run(python, [path.join(root, 'scripts', 'torch_runtime_requirements.py'), path.join(wheels, torchWheel)]);
    assert.ok(
      requirements.length > 0,
      `pip found ${torchWheel}, which is not a CUDA build (it names no nvidia-* libraries); set SAM3_CUDA_TORCH_VERSION to a version pip can get as a CUDA wheel`,
    );
    await writeFile(path.join(dir, 'requirements.txt'), `${requirements}\n`);
    pipDownload(['-d', wheels, '-r', path.join(dir, 'requirements.txt')]);
    const cuda = /cuda-toolkit[^=]*==(\d+\.\d+)/.exec(requirements)?.[1] ?? /nvidia-cuda-runtime[^=]*==(\d+\.\d+)/.exec(requirements)?.[1];
    assert.ok(cuda, `the CUDA version of ${torchWheel} from its requirements:\n${requirements}`);
    t.diagnostic(`${torchWheel} (CUDA ${cuda}) and ${(await readdir(wheels)).length - 1} library wheels`);

    const t0 = Date.now();
    const baseTag = baseImage();
    const nodeTag = await nodeImage(dir);
    const develTag = await cudaDevelImage(baseTag, cuda, dir);
    t.diagnostic(`base, node and CUDA devel stand-in images: ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const t1 = Date.now();
    await build(
      [
        '-f', path.join(root, 'Dockerfile.cuda'),
        '--build-arg', `BUILD_BASE=${develTag}`, '--build-arg', `RUNTIME_BASE=${baseTag}`, '--build-arg', `NODE_IMAGE=${nodeTag}`,
        '--build-arg', `TORCH_VERSION=${torchVersion}`, '--build-arg', 'TORCH_PIP_ARGS=--no-index',
        '--build-context', `wheels=${wheels}`, '--build-context', `certs=${await certsContext(dir)}`,
        '-t', TAG, root,
      ],
      path.join(dir, 'build.log'),
    );
    const size = Number(run('podman', ['image', 'inspect', '--format', '{{.Size}}', TAG]));
    t.diagnostic(`build: ${((Date.now() - t1) / 1000).toFixed(0)} s; image size ${(size / 1e6).toFixed(0)} MB`);
    const labels = JSON.parse(run('podman', ['image', 'inspect', '--format', '{{json .Config.Labels}}', TAG])) as Record<string, string>;
    assert.equal(labels['io.sam3.device'], 'cuda');
    assert.equal(labels['io.sam3.torch-version'], torchVersion);
    await rm(wheels, { recursive: true, force: true });
  });

  it('carries libtorch_cuda with every library it loads, and the addon linked against it', () => {
    const sh = (script: string) => run('podman', ['run', '--rm', '--entrypoint', 'sh', TAG, '-c', script]);
    const ldd = sh('ldd /opt/torch/torch/lib/libtorch_cuda.so /app/build/Release/sam3.node');
    assert.doesNotMatch(ldd, /not found/, `unresolved libraries:\n${ldd}`);
    // libtorch_cuda finds them through its RPATH, $ORIGIN/../../nvidia/*/lib.
    for (const lib of ['libcudart.so', 'libcublas.so', 'libcudnn.so', 'libnccl.so']) {
      assert.match(ldd, new RegExp(`${lib.replace('.', '\\.')}[.\\d]* => /opt/torch/torch/lib/\\.\\./\\.\\./nvidia/`), `${lib} from /opt/torch/nvidia`);
    }
    assert.match(ldd, /libtorch_cuda\.so => \/opt\/torch\/torch\/lib\//, 'the addon needs libtorch_cuda (CUDA kernels registered)');
    assert.equal(sh('find /opt/torch/nvidia \\( -name include -o -name "*.a" \\) | wc -l'), '0', 'no headers or static libraries in the runtime');
    const info = JSON.parse(sh(`cd /app && node -e "console.log(JSON.stringify(require('./build/Release/sam3.node').runtimeInfo()))"`)) as { torchVersion: string; cudaAvailable: boolean };
    assert.equal(info.torchVersion, torchVersion);
    assert.equal(info.cudaAvailable, false, 'no GPU here');
  });

  it('without a GPU, refuses to start by default, saying what to change', async () => {
    const { bundle } = await fixture();
    const r = attempt('podman', ['run', '--rm', '-v', `${bundle}:/models/sam3:ro`, '-e', 'IMAGE_MODEL_WARMUP=false', TAG]);
    assert.notEqual(r.status, 0, r.output);
    assert.match(r.output, /CUDA is not available.*set IMAGE_MODEL_DEVICE \(or DEVICES\).*--gpus/, r.output.slice(-2000));
  });

  it('with IMAGE_MODEL_DEVICE=auto, serves a tiny bundle on the CPU when there is no GPU, and stops cleanly', async (t) => {
    const { bundle } = await fixture();
    const port = await freePort();
    name = `sam3-test-cuda-${process.pid}`;
    run('podman', ['run', '-d', '--name', name, '-p', `127.0.0.1:${port}:8000`, '-v', `${bundle}:/models/sam3:ro`, '-e', 'IMAGE_MODEL_DEVICE=auto', '-e', 'ENGINE_THREADS=2', '-e', 'IMAGE_MODEL_WARMUP=false', TAG]);
    const base = `http://127.0.0.1:${port}`;
    await waitHealthy(base, name);
    const health = await get(base, '/health');
    assert.equal(health.body.gpu_available, false);
    assert.equal(attempt('podman', ['healthcheck', 'run', name]).status, 0, 'the HEALTHCHECK passes');
    await exerciseServer(base, dir);
    t.diagnostic(`podman stop took ${stopCleanly(name).toFixed(1)} s`);
  });
});
