// The shape of the code base (docs/architecture.md): a library that is a DAG, a server that reaches
// it only through its public API, native algorithm files free of N-API, no oversized files, and
// one table that gives every error code its HTTP status.
import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';

import { ErrorCode, USER_ERROR_CODES } from '../src/index.js';
import { ERROR_STATUS } from '../src/server/core/errors.js';
import { root } from './helpers.js';

function files(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = path.join(dir, name);
    if (statSync(p).isDirectory()) {
      if (name !== '__pycache__') out.push(...files(p, ext));
    } else if (ext.test(name)) out.push(p);
  }
  return out;
}

const IMPORT = /(?:^|\n)\s*(?:import|export)\s[^;]*?from\s+['"](\.{1,2}\/[^'"]+)['"]/g;

/** Relative import graph of the TypeScript under src/ (type-only imports included). */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of files(path.join(root, 'src'), /\.ts$/)) {
    if (file.endsWith('.d.ts')) continue;
    const text = readFileSync(file, 'utf8');
    const deps: string[] = [];
    for (const m of text.matchAll(IMPORT)) deps.push(path.resolve(path.dirname(file), m[1]!.replace(/\.js$/, '.ts')));
    graph.set(file, deps);
  }
  return graph;
}

function cycles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (node: string) => {
    state.set(node, 'open');
    stack.push(node);
    for (const next of graph.get(node) ?? []) {
      if (state.get(next) === 'open') found.push(stack.slice(stack.indexOf(next)).concat(next));
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(node, 'done');
  };
  for (const node of graph.keys()) if (!state.has(node)) visit(node);
  return found;
}

const rel = (p: string) => path.relative(root, p);

describe('code structure', () => {
  it('src/ has no import cycles (type-only imports included)', () => {
    const graph = importGraph();
    assert.ok(graph.size > 40, `read ${graph.size} files`);
    const found = cycles(graph).map((c) => c.map(rel).join(' -> '));
    assert.deepEqual(found, []);
  });

  it('the cycle check finds a cycle when there is one', () => {
    const g = new Map([
      ['a', ['b']],
      ['b', ['c']],
      ['c', ['a']],
    ]);
    assert.deepEqual(cycles(g), [['a', 'b', 'c', 'a']]);
  });

  it('the server reaches the library only through its public API (src/index.ts)', () => {
    const server = path.join(root, 'src', 'server') + path.sep;
    const deep: string[] = [];
    for (const [file, deps] of importGraph()) {
      if (!file.startsWith(server)) continue;
      for (const d of deps) if (!d.startsWith(server) && d !== path.join(root, 'src', 'index.ts')) deep.push(`${rel(file)} -> ${rel(d)}`);
    }
    assert.deepEqual(deep, []);
  });

  it('the public API does not export the addon binding (src/native.ts)', () => {
    const index = readFileSync(path.join(root, 'src', 'index.ts'), 'utf8');
    assert.doesNotMatch(index, /from '\.\/native\.js'/);
  });

  it('no source file is over 500 lines', () => {
    const sources = [...files(path.join(root, 'src'), /\.ts$/), ...files(path.join(root, 'native'), /\.(cc|h)$/), ...files(path.join(root, 'scripts'), /\.(py|mjs)$/)];
    const long = sources.map((f) => [rel(f), readFileSync(f, 'utf8').split('\n').length] as const).filter(([, n]) => n > 500);
    assert.deepEqual(long, []);
  });

  it('the HTTP status table covers every error code: 4xx (or 501, a feature the model lacks) exactly for user errors', () => {
    // A library caller who uses a disposed handle made a mistake; in the server only the server
    // disposes handles, so a request that meets one met our fault (or shutdown: 503).
    const serverOwned = new Set<string>([ErrorCode.Disposed]);
    for (const code of Object.values(ErrorCode)) {
      if (serverOwned.has(code)) continue;
      const m = ERROR_STATUS[code];
      assert.ok(m, `${code} has an HTTP mapping`);
      const user = m.status < 500 || m.status === 501;
      assert.equal(user, USER_ERROR_CODES.has(code), `${code}: status ${m.status} vs isUserError ${USER_ERROR_CODES.has(code)}`);
    }
  });
});
