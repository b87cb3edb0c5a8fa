#!/usr/bin/env node
// Makes the prebuilt addon package for this platform (@sam3-server/linux-x64-cpu) from a build from
// source: sam3.node with its RUNPATH rewritten from the absolute libtorch folder it was linked
// against to $ORIGIN (src/addon-loader.ts loads libtorch before it), prebuilt.json saying which torch
// it needs, and a package.json that npm installs only on this os, cpu and libc.
//
//   node scripts/make-prebuilt.mjs [--addon build/Release/sam3.node] [--out build/prebuilt] [--pack]
//
// --pack also runs `npm pack` there and prints the tarball's path last.
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

import { PREBUILT_META, prebuiltName } from './lib/addon.mjs';
import { readNeeded, readRunpath, setRunpath } from './lib/elf.mjs';
import { baseVersion } from './lib/torch.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const { values } = parseArgs({
  options: {
    addon: { type: 'string', default: path.join(root, 'build', 'Release', 'sam3.node') },
    out: { type: 'string', default: path.join(root, 'build', 'prebuilt') },
    pack: { type: 'boolean', default: false },
  },
});
const addon = path.resolve(values.addon ?? '');
const outDir = path.resolve(values.out ?? '');
const pkg = JSON.parse(readFileSync(path.join(root, 'package.json'), 'utf8'));

if (process.platform !== 'linux') throw new Error('prebuilt addons are made on Linux only (ELF RUNPATH)');
const needed = readNeeded(addon);
if (needed.some((n) => /cuda/.test(n))) throw new Error(`${addon} links CUDA libraries (${needed.join(', ')}); only the CPU prebuilt is made here`);
// The torch it was linked against, as the addon itself reports it (it finds libtorch by its RPATH).
const info = JSON.parse(
  execFileSync(process.execPath, ['-e', 'console.log(JSON.stringify(require(process.argv[1]).runtimeInfo()))', addon], { encoding: 'utf8' }).trim().split('\n').pop() ?? '{}',
);

const name = prebuiltName();
const dir = path.join(outDir, name.split('/')[1] ?? name);
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const target = path.join(dir, 'sam3.node');
copyFileSync(addon, target);
const was = readRunpath(target);
setRunpath(target, '$ORIGIN');

const meta = { platform: process.platform, arch: process.arch, backend: 'cpu', torchVersion: baseVersion(info.torchVersion), napiVersion: pkg.binary.napi_versions[0] };
writeFileSync(path.join(dir, PREBUILT_META), `${JSON.stringify(meta, null, 2)}\n`);
writeFileSync(
  path.join(dir, 'package.json'),
  `${JSON.stringify(
    {
      name,
      version: pkg.version,
      description: `Prebuilt sam3-server addon for ${process.platform}-${process.arch}, CPU, torch ${meta.torchVersion}`,
      license: pkg.license,
      os: [process.platform],
      cpu: [process.arch],
      libc: ['glibc'],
      files: ['sam3.node', PREBUILT_META, 'README.md'],
    },
    null,
    2,
  )}\n`,
);
writeFileSync(
  path.join(dir, 'README.md'),
  `# ${name}\n\nThe prebuilt native addon of [sam3-server](https://www.npmjs.com/package/sam3-server) for ${process.platform}-${process.arch} on a CPU, ` +
    `linked against torch ${meta.torchVersion}. Installed by sam3-server as an optional dependency; it does not contain libtorch: ` +
    `sam3-server loads libtorch from the torch it finds at install time (or $LIBTORCH) before this addon.\n`,
);
console.log(`${name}: ${target} (torch ${meta.torchVersion}; RUNPATH ${was} -> $ORIGIN)`);

if (values.pack) {
  const r = spawnSync('npm', ['pack', '--pack-destination', outDir], { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm pack failed: ${r.stderr}`);
  console.log(path.join(outDir, r.stdout.trim().split('\n').pop() ?? ''));
}
