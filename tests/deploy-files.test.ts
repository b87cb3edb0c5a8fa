/**
 * The deployment files, checked offline: both Dockerfiles lint clean (dockerfile-utils) and share
 * every stage; the nginx configs for compose and Kubernetes pass `nginx -t` with the shared routing
 * files; the Kubernetes manifests validate against the API schemas (kubernetes-models) and keep
 * what the routing relies on (stable pod names as REPLICA_ID, the two headless Services, readiness
 * on /health, one GPU per pod); compose.yaml's replicas match its nginx config.
 * `nginx -t` needs nginx on PATH (skipped without it unless SAM3_REQUIRE_DEPLOY_TOOLS=1).
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync, readdirSync, statSync } from 'node:fs';
import { mkdir, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { describe, it } from 'node:test';

import { validate } from 'dockerfile-utils';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { Service } from 'kubernetes-models/v1/Service';
import { parse, parseAllDocuments } from 'yaml';

import { REPLICA_NAME } from '../src/server/core/replica.js';
import { root, tempDir } from './helpers.js';

const read = (p: string) => readFileSync(path.join(root, p), 'utf8');
const SHARED = '# ---- shared stages: identical in Dockerfile and Dockerfile.cuda below this line ----';
const hasNginx = spawnSync('nginx', ['-v']).status === 0;
const nginxSkip = !hasNginx && process.env.SAM3_REQUIRE_DEPLOY_TOOLS !== '1' ? 'nginx is not installed (apt-get install nginx)' : false;

/** Runs `nginx -t` on a deployment's server config, its includes pointing at the repo's files. */
async function nginxTest(conf: string, rewrite: (text: string) => string): Promise<void> {
  const dir = await tempDir('sam3-nginx-t-');
  const text = rewrite(read(conf)).replaceAll('/etc/nginx/sam3/', `${root}/deploy/nginx/`);
  await writeFile(path.join(dir, 'site.conf'), text);
  for (const sub of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) await mkdir(path.join(dir, sub), { recursive: true });
  await writeFile(
    path.join(dir, 'nginx.conf'),
    `pid ${dir}/nginx.pid;\nerror_log ${dir}/error.log;\nevents {}\nhttp {\n client_body_temp_path ${dir}/body;\n proxy_temp_path ${dir}/proxy;\n fastcgi_temp_path ${dir}/fastcgi;\n uwsgi_temp_path ${dir}/uwsgi;\n scgi_temp_path ${dir}/scgi;\n include ${dir}/site.conf;\n}\n`,
  );
  const r = spawnSync('nginx', ['-t', '-p', dir, '-c', path.join(dir, 'nginx.conf')], { encoding: 'utf8' });
  assert.equal(r.status, 0, `${conf}: ${r.stderr}`);
}

describe('Dockerfiles', () => {
  for (const file of ['Dockerfile', 'Dockerfile.cuda']) {
    it(`${file} lints clean`, () => {
      const problems = validate(read(file)).map((d) => `${file}:${d.range.start.line + 1}: ${d.message}`);
      assert.deepEqual(problems, []);
    });
  }

  it('the linter finds problems (it is not vacuous)', () => {
    const broken = `${read('Dockerfile')}\nEXPOSE 8000/tcpx\nHEALTHCHECK --interval=5x CMD true\nCOPY\n`;
    assert.ok(validate(broken).length >= 3, 'three planted problems found');
  });

  it('Dockerfile.cuda shares every stage with Dockerfile; only the arguments differ', () => {
    const cpu = read('Dockerfile');
    const cuda = read('Dockerfile.cuda');
    assert.ok(cpu.includes(SHARED) && cuda.includes(SHARED));
    assert.equal(cuda.slice(cuda.indexOf(SHARED)), cpu.slice(cpu.indexOf(SHARED)));
    const args = (text: string) => Object.fromEntries([...text.slice(0, text.indexOf(SHARED)).matchAll(/^ARG (\w+)=(.*)$/gm)].map((m) => [m[1], m[2]]));
    assert.deepEqual(Object.keys(args(cuda)).sort(), Object.keys(args(cpu)).sort(), 'the same arguments');
    assert.match(args(cuda).BUILD_BASE!, /nvidia\/cuda:.*devel/);
    assert.match(args(cuda).TORCH_PIP_ARGS!, /whl\/cu\d+/);
    // The CUDA of the bases is the CUDA of the torch wheels (cu130 <-> nvidia/cuda:13.0.x).
    const wheelCuda = /whl\/cu(\d+)/.exec(args(cuda).TORCH_PIP_ARGS!)![1];
    for (const base of [args(cuda).BUILD_BASE!, args(cuda).RUNTIME_BASE!]) {
      const m = /nvidia\/cuda:(\d+)\.(\d+)\./.exec(base);
      assert.ok(m, `${base} is an nvidia/cuda image`);
      assert.equal(`${m[1]}${m[2]}`, wheelCuda, `${base} matches the wheels' cu${wheelCuda}`);
    }
    assert.match(args(cpu).TORCH_PIP_ARGS!, /whl\/cpu/);
  });

  it('the runtime stage: non-root, HEALTHCHECK on /health/ready, EXPOSE 8000, OCI labels, the server as PID 1', () => {
    const text = read('Dockerfile');
    const runtime = text.slice(text.indexOf('AS runtime'));
    assert.match(runtime, /^USER sam3$/m);
    assert.match(runtime, /useradd --system --uid 10001/);
    assert.match(runtime, /^HEALTHCHECK [^\n]*\\\n\s+CMD \[.*'\/health\/ready'\)/m);
    assert.match(runtime, /^EXPOSE 8000$/m);
    assert.match(runtime, /org\.opencontainers\.image\.title="sam3-server"/);
    assert.match(runtime, /^CMD \["node", "dist\/server\/main\.js"\]$/m);
    assert.doesNotMatch(runtime, /^ENTRYPOINT/m);
    assert.match(runtime, /^VOLUME \["\/data"\]$/m);
  });
});

describe('Dockerfile build context', () => {
  /** Files (repo-relative) the builder stage COPYs from the context, folders expanded. */
  function copied(text: string): Set<string> {
    const builder = text.slice(text.indexOf('AS builder'), text.indexOf('AS runtime'));
    const out = new Set<string>();
    const walk = (p: string): void => {
      const abs = path.join(root, p);
      if (!existsSync(abs)) return;
      if (statSync(abs).isDirectory()) for (const f of readdirSync(abs)) walk(path.join(p, f));
      else out.add(p);
    };
    for (const m of builder.matchAll(/^COPY (?!--from)(.+)$/gm)) {
      const parts = m[1]!.trim().split(/\s+/);
      for (const src of parts.slice(0, -1)) walk(src);
    }
    return out;
  }

  for (const file of ['Dockerfile', 'Dockerfile.cuda']) {
    it(`${file}: every script it copies finds the modules it imports statically`, () => {
      const files = copied(read(file));
      assert.ok(files.has('scripts/build-native.mjs'), 'the addon build script is copied');
      const missing: string[] = [];
      for (const f of files) {
        if (!f.endsWith('.mjs')) continue;
        // Static imports load with the file; setup.mjs's dynamic ones run only without SAM3_SKIP_SETUP.
        for (const m of read(f).matchAll(/^import [^;]*?from ['"](\.{1,2}\/[^'"]+)['"]/gm)) {
          const dep = path.join(path.dirname(f), m[1]!);
          if (!files.has(dep)) missing.push(`${f} imports ${dep}`);
        }
      }
      assert.deepEqual(missing, []);
    });
  }

  it('.dockerignore lets through every path the Dockerfiles copy', () => {
    const allowed = read('.dockerignore')
      .split('\n')
      .filter((l) => l.startsWith('!'))
      .map((l) => l.slice(1).replace(/\/$/, ''));
    for (const f of copied(read('Dockerfile'))) assert.ok(allowed.some((a) => f === a || f.startsWith(`${a}/`)), `${f} is in .dockerignore's allowlist`);
  });
});

describe('nginx configs', { skip: nginxSkip }, () => {
  it('compose.conf passes nginx -t', () => nginxTest('deploy/nginx/compose.conf', (t) => t.replace(/server (sam3-\d):8000/g, 'server 127.0.0.1:8000').replace('resolver 127.0.0.11', 'resolver 127.0.0.1')));
  it('k8s.conf passes nginx -t', () => nginxTest('deploy/nginx/k8s.conf', (t) => t.replace(/resolver \S+/, 'resolver 127.0.0.1')));
});

describe('Kubernetes manifests', () => {
  const docs = ['deploy/k8s/sam3.yaml', 'deploy/k8s/nginx.yaml'].flatMap((f) =>
    parseAllDocuments(read(f)).map((d) => {
      assert.deepEqual(d.errors, [], f);
      return d.toJS() as { apiVersion: string; kind: string; metadata: { name: string }; spec: any };
    }),
  );
  const find = (kind: string, name: string) => docs.find((d) => d.kind === kind && d.metadata.name === name)!;

  it('validate against the Kubernetes API schemas', () => {
    const models: Record<string, new (d: any) => { validate(): void }> = { 'apps/v1/StatefulSet': StatefulSet, 'apps/v1/Deployment': Deployment, 'v1/Service': Service };
    assert.equal(docs.length, 5);
    for (const d of docs) {
      const Model = models[`${d.apiVersion}/${d.kind}`];
      assert.ok(Model, `${d.apiVersion} ${d.kind} has a model`);
      new Model(d).validate();
    }
  });

  it('keep what the routing relies on', () => {
    const sts = find('StatefulSet', 'sam3');
    const pod = sts.spec.template.spec;
    const c = pod.containers[0];
    assert.equal(sts.spec.serviceName, 'sam3');
    const headless = find('Service', 'sam3');
    assert.equal(headless.spec.clusterIP, 'None');
    assert.equal(headless.spec.publishNotReadyAddresses, true, 'owners stay reachable while draining');
    const ready = find('Service', 'sam3-ready');
    assert.equal(ready.spec.clusterIP, 'None');
    assert.notEqual(ready.spec.publishNotReadyAddresses, true, 'new work only to ready pods');
    const env = Object.fromEntries(c.env.map((e: any) => [e.name, e]));
    assert.equal(env.REPLICA_ID.valueFrom.fieldRef.fieldPath, 'metadata.name', 'the pod name is the replica name');
    assert.match(`${sts.metadata.name}-0`, REPLICA_NAME);
    assert.equal(c.readinessProbe.httpGet.path, '/health/ready', 'readiness flips first on SIGTERM');
    assert.equal(c.livenessProbe.httpGet.path, '/health/live', 'liveness never fails while loading or draining');
    assert.equal(c.startupProbe.httpGet.path, '/health/ready', 'the startup probe waits for the model');
    assert.ok(c.startupProbe.periodSeconds * c.startupProbe.failureThreshold >= 300, 'minutes to load the model');
    assert.equal(c.resources.limits['nvidia.com/gpu'], 1, 'one GPU per pod');
    assert.equal(c.resources.requests['nvidia.com/gpu'], 1);
    assert.equal(pod.securityContext.runAsUser, 10001);
    const delay = Number(env.SHUTDOWN_DELAY_MS.value);
    assert.ok(delay >= 5000 && delay <= 15000, 'serving on while endpoints and nginx (DNS valid=5s) catch up');
    assert.ok(c.readinessProbe.periodSeconds * c.readinessProbe.failureThreshold * 1000 <= delay, 'readiness fails within the delay');
    assert.ok(pod.terminationGracePeriodSeconds * 1000 > delay + Number(env.SHUTDOWN_TIMEOUT_MS.value), 'the grace period covers the delay and the drain');
    // nginx's owner routing matches the pod names and the Services.
    const conf = read('deploy/nginx/k8s.conf');
    const podRule = /"~\^\(\?<pod>(.+?)\)\$" \$pod\.(\w[\w-]*)\.default\.svc/.exec(conf);
    assert.ok(podRule, 'k8s.conf routes owners to pods');
    assert.match(`${sts.metadata.name}-2`, new RegExp(`^${podRule[1]}$`));
    assert.equal(podRule[2], headless.metadata.name);
    assert.match(conf, new RegExp(`"" ${ready.metadata.name}\\.default\\.svc`));
    // kustomize builds the nginx ConfigMap from files that exist.
    const kust = parse(read('deploy/kustomization.yaml')) as { resources: string[]; configMapGenerator: { name: string; files: string[] }[] };
    for (const f of [...kust.resources, ...kust.configMapGenerator[0]!.files]) assert.ok(existsSync(path.join(root, 'deploy', f)), f);
    const lb = find('Deployment', 'sam3-lb');
    assert.equal(lb.spec.template.spec.volumes[0].configMap.name, kust.configMapGenerator[0]!.name);
  });
});

describe('compose.yaml', () => {
  it('each replica names itself, shares the model read-only, has its own data volume, and nginx knows them all', () => {
    const compose = parse(read('compose.yaml'), { merge: true }) as { services: Record<string, any> };
    const replicas = Object.keys(compose.services).filter((n) => n.startsWith('sam3-'));
    assert.equal(replicas.length, 3);
    const conf = read('deploy/nginx/compose.conf');
    for (const name of replicas) {
      const s = compose.services[name];
      assert.equal(s.environment.REPLICA_ID, name);
      assert.match(name, REPLICA_NAME);
      assert.ok(s.volumes.some((v: string) => v.endsWith(':/models/sam3:ro')));
      assert.ok(s.volumes.includes(`${name}-data:/data`));
      assert.equal(s.deploy.resources.reservations.devices[0].capabilities[0], 'gpu');
      assert.match(conf, new RegExp(`server ${name}:8000 max_fails=0;`));
      assert.equal(conf.match(new RegExp(`^\\s+${name} ${name}:8000;$`, 'gm'))?.length, 2, `${name} in both target maps`);
    }
    for (const v of compose.services.lb.volumes as string[]) assert.ok(existsSync(path.join(root, v.split(':')[0]!)), v);
  });
});
