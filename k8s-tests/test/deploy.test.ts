// `make deploy` (scripts/deploy.sh) against the API server, as a user runs it: a dry run on a
// first deploy, the four Secrets the manifests read (never overwritten), server-side apply with
// our field manager alone on every object, and PRUNE=1 deleting what the preset no longer has.
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject, it } from 'vitest';
import YAML from 'yaml';
import { synthManifests } from '@wa-router/cdk8s';
import { deleteNamespace } from '../src/cluster.js';
import { eventually, FIELD_MANAGER, Kube, type KubeObject } from '../src/kube.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const kube = new Kube(inject('kubeconfig'));
const NAMESPACE = 'wa-deploy';
const IMAGE = 'registry.example/wa-router:test';

type Secret = KubeObject & { data: Record<string, string> };
const secret = async (name: string) => kube.get<Secret>(`/api/v1/namespaces/${NAMESPACE}/secrets/${name}`);
const decode = (s: Secret | undefined, key: string) => Buffer.from(s?.data[key] ?? '', 'base64').toString('utf8');

function deploy(extra: Record<string, string>): string {
  try {
    return execFileSync(path.join(ROOT, 'scripts', 'deploy.sh'), {
      cwd: ROOT, encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env, PATH: `${inject('binDir')}:${process.env['PATH'] ?? ''}`, KUBECONFIG: inject('kubeconfig'),
        PRESET: 'minimal', NAMESPACE, IMAGE, WAIT: '0', ...extra,
      },
    });
  } catch (err) {
    const e = err as { stdout?: string; stderr?: string; message: string };
    throw new Error(`make deploy failed: ${e.message}\n${e.stdout ?? ''}\n${e.stderr ?? ''}`, { cause: err });
  }
}

/** The field managers that applied an object, and any kubectl that wrote it outside them. */
async function writers(m: { apiVersion: string; kind: string; metadata: { name: string; namespace?: string } }) {
  const o = await kube.get<KubeObject>(await kube.objectPath(m));
  const fields = o?.metadata.managedFields ?? [];
  return { exists: !!o, apply: fields.filter((f) => f.operation === 'Apply').map((f) => f.manager), kubectl: fields.filter((f) => /kubectl/.test(f.manager)).map((f) => `${f.manager}/${f.operation}`) };
}

describe.runIf(inject('binDir'))('make deploy', () => {
  afterAll(async () => deleteNamespace(kube, NAMESPACE));

  it('DRY_RUN=1 on a first deploy (no namespace yet) checks everything and changes nothing', async () => {
    expect(await kube.get(`/api/v1/namespaces/${NAMESPACE}`)).toBeUndefined();
    const out = deploy({ DRY_RUN: '1', WHATSAPP_APP_SECRET: 'dry-app-secret' });
    expect(out).toMatch(/secret\/wa-router-app would be created/);
    expect(out).toMatch(/dry run: nothing changed/);
    expect(await kube.get(`/api/v1/namespaces/${NAMESPACE}`)).toBeUndefined();
  });

  it('stops when the namespace cannot be looked up, instead of taking it for a first deploy', () => {
    // A user the cluster knows nothing about: it may read /version but not namespaces (forbidden).
    const config = YAML.parse(fs.readFileSync(inject('kubeconfig'), 'utf8')) as { users: { user: Record<string, unknown> }[] };
    for (const u of config.users) u.user['as'] = 'wa-deploy-nobody';
    const kubeconfig = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wa-deploy-')), 'kubeconfig');
    fs.writeFileSync(kubeconfig, YAML.stringify(config), { mode: 0o600 });
    let failure = '';
    try {
      deploy({ DRY_RUN: '1', WHATSAPP_APP_SECRET: 'dry-app-secret', KUBECONFIG: kubeconfig });
    } catch (err) {
      failure = (err as Error).message;
    }
    expect(failure).toMatch(/cannot look up namespace wa-deploy/);
    expect(failure).toMatch(/forbidden/);
  });

  it('DRY_RUN=1 on a first deploy fails on what the server\'s admission denies, and leaves no namespace behind', async () => {
    // A cluster policy this preset breaks: images only from a registry the chart does not use.
    const policy = {
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicy', metadata: { name: 'wa-deploy-trusted-images' },
      spec: {
        failurePolicy: 'Fail',
        matchConstraints: { resourceRules: [
          { apiGroups: ['apps'], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['deployments', 'statefulsets'] },
          { apiGroups: ['batch'], apiVersions: ['v1'], operations: ['CREATE', 'UPDATE'], resources: ['jobs'] },
        ] },
        validations: [{ expression: "object.spec.template.spec.containers.all(c, c.image.startsWith('trusted.example/'))", message: 'images must come from trusted.example' }],
      },
    };
    const binding = {
      apiVersion: 'admissionregistration.k8s.io/v1', kind: 'ValidatingAdmissionPolicyBinding', metadata: { name: 'wa-deploy-trusted-images' },
      spec: { policyName: policy.metadata.name, validationActions: ['Deny'] },
    };
    const probe = {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'wa-deploy-probe', namespace: 'default' },
      spec: { selector: { matchLabels: { app: 'probe' } }, template: { metadata: { labels: { app: 'probe' } }, spec: { containers: [{ name: 'c', image: IMAGE }] } } },
    };
    try {
      for (const m of [policy, binding]) expect((await kube.apply(m)).status).toBeLessThan(300);
      // Policies take effect a moment after they are stored.
      await eventually('the policy to deny', async () => (await kube.apply(probe, { dryRun: true })).status >= 400);
      expect(await kube.get(`/api/v1/namespaces/${NAMESPACE}`)).toBeUndefined();
      expect(() => deploy({ DRY_RUN: '1', WHATSAPP_APP_SECRET: 'dry-app-secret' })).toThrow(/images must come from trusted\.example/);
      expect(await kube.get(`/api/v1/namespaces/${NAMESPACE}`)).toBeUndefined();
      const left = (await kube.list<KubeObject>('/api/v1/namespaces')).map((n) => n.metadata.name).filter((n) => n.startsWith(NAMESPACE));
      expect(left).toEqual([]);
    } finally {
      await kube.delete(await kube.objectPath(binding));
      await kube.delete(await kube.objectPath(policy));
    }
    await eventually('the policy to be gone', async () => (await kube.apply(probe, { dryRun: true })).status < 300);
  });

  it('refuses a password DATABASE_URL, the userlist or requirepass cannot carry, naming the variable, before touching the cluster', async () => {
    for (const [name, value] of [['DB_PASSWORD', 'p@ss/word#1?x'], ['DB_PASSWORD', 'has a space in it'], ['REDIS_PASSWORD', 'quote"inside-it'], ['DB_PASSWORD', 'short']]) {
      expect(() => deploy({ WHATSAPP_APP_SECRET: 'x-app-secret', [name!]: value! }), `${name}=${value}`).toThrow(new RegExp(`${name} must be at least 12 characters of letters, digits and \\. _ ~ - only`));
    }
    expect(await kube.get(`/api/v1/namespaces/${NAMESPACE}`)).toBeUndefined();
  });

  it('creates the Secrets, applies every object as our field manager alone, and keeps existing Secrets on a second run', async () => {
    deploy({ WHATSAPP_APP_SECRET: 'first-app-secret', DB_PASSWORD: 'first0db0password', PRUNE: '1' });
    const app = await secret('wa-router-app');
    expect(decode(app, 'WHATSAPP_APP_SECRET')).toBe('first-app-secret');
    expect(decode(app, 'API_TOKEN')).toMatch(/^[0-9a-f]{48}$/);
    expect(decode(await secret('wa-router-postgres'), 'password')).toBe('first0db0password');
    expect(decode(await secret('wa-router-pgbouncer'), 'userlist.txt')).toBe('"wa_router" "first0db0password"');
    expect(decode(await secret('wa-router-redis'), 'password')).toMatch(/^[0-9a-f]{48}$/);
    const ns = await kube.get<KubeObject>(`/api/v1/namespaces/${NAMESPACE}`);
    expect(ns?.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');
    // Every object the preset has, and the Secrets: applied by wa-router and by nobody else.
    const objects = [
      ...synthManifests('minimal', { namespace: NAMESPACE, image: IMAGE }),
      ...['wa-router-app', 'wa-router-postgres', 'wa-router-redis', 'wa-router-pgbouncer'].map((name) => ({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: NAMESPACE } })),
    ];
    for (const m of objects) {
      expect(await writers(m), `${m.kind}/${m.metadata.name}`).toEqual({ exists: true, apply: [FIELD_MANAGER], kubectl: [] });
    }

    const restartedAt = async () => (await kube.get<KubeObject & { spec: { template: { metadata: { annotations?: Record<string, string> } } } }>(`/apis/apps/v1/namespaces/${NAMESPACE}/deployments/wa-router-worker`))?.spec.template.metadata.annotations?.['kubectl.kubernetes.io/restartedAt'];
    expect(await restartedAt(), 'a first deploy restarts nothing').toBeUndefined();
    const out = deploy({ WHATSAPP_APP_SECRET: 'second-app-secret', DB_PASSWORD: 'second0password', PRUNE: '1' });
    expect(out).toMatch(/secret\/wa-router-postgres exists: kept/);
    // The same tag again: the pod template is unchanged, so only a restart makes pods pull what it names now.
    expect(out).toMatch(/is a tag: restarting web and worker/);
    expect(await restartedAt()).toBeTruthy();
    expect(decode(await secret('wa-router-app'), 'WHATSAPP_APP_SECRET')).toBe('first-app-secret');
    expect(decode(await secret('wa-router-pgbouncer'), 'userlist.txt')).toBe('"wa_router" "first0db0password"');
  }, 300_000);

  it('upgrades an installation whose existing database password is safe but shorter than 12 characters, with a warning', async () => {
    deploy({ WHATSAPP_APP_SECRET: 'first-app-secret', DB_PASSWORD: 'first0db0password', PRUNE: '1' });
    const path_ = `/api/v1/namespaces/${NAMESPACE}/secrets/wa-router-postgres`;
    const original = decode(await secret('wa-router-postgres'), 'password');
    const set = (pw: string) => kube.request('PATCH', path_, { data: { password: Buffer.from(pw).toString('base64') } }, 'application/merge-patch+json');
    expect((await set('short0pw')).status).toBe(200);
    try {
      let out = '';
      try {
        out = execFileSync(path.join(ROOT, 'scripts', 'deploy.sh'), {
          cwd: ROOT, encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'pipe'],
          env: { ...process.env, PATH: `${inject('binDir')}:${process.env['PATH'] ?? ''}`, KUBECONFIG: inject('kubeconfig'), PRESET: 'minimal', NAMESPACE, IMAGE, WAIT: '0', PRUNE: '1' },
        });
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string };
        expect.fail(`the upgrade was refused:\n${e.stdout ?? ''}\n${e.stderr ?? ''}`);
      }
      expect(out).toMatch(/secret\/wa-router-postgres exists: kept/);
      expect(decode(await secret('wa-router-postgres'), 'password')).toBe('short0pw');
      // Unsafe characters in an existing password still stop the deploy: they would break DATABASE_URL.
      await set('bad/pass@word');
      expect(() => deploy({ PRUNE: '1' })).toThrow(/the password in secret\/wa-router-postgres must be letters, digits and \. _ ~ - only/);
    } finally {
      await set(original);
    }
  }, 300_000);

  it('stops at once when the migration Job fails, naming it, instead of waiting out the timeout', async () => {
    const jobs = async () => (await kube.get<{ items: KubeObject[] }>(`/apis/batch/v1/namespaces/${NAMESPACE}/jobs`))?.items.filter((j) => j.metadata.name.startsWith('wa-router-migrate')) ?? [];
    // Installed, so the next deploy is an upgrade (the web Deployment exists).
    deploy({ WHATSAPP_APP_SECRET: 'first-app-secret', DB_PASSWORD: 'first0db0password', PRUNE: '1' });
    const [old] = await jobs();
    expect(old, 'an earlier deploy left its migration Job').toBeTruthy();
    const jobPath = `/apis/batch/v1/namespaces/${NAMESPACE}/jobs/${old!.metadata.name}`;
    const before = old!.metadata.uid;
    // An upgrade (the web Deployment exists) with a tag: the script re-runs the Job and waits for it.
    const child = spawn(path.join(ROOT, 'scripts', 'deploy.sh'), [], {
      cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PATH: `${inject('binDir')}:${process.env['PATH'] ?? ''}`, KUBECONFIG: inject('kubeconfig'), PRESET: 'minimal', NAMESPACE, IMAGE, WAIT: '1', PRUNE: '1', MIGRATION_TIMEOUT_S: '240' },
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    try {
      await eventually('the re-created migration Job', async () => {
        const job = await kube.get<KubeObject>(jobPath);
        return job && job.metadata.uid !== before ? job : undefined;
      }, 120_000);
      // No kubelet runs here: the Job fails the way the Job controller marks a failure.
      const now = new Date().toISOString();
      const failed = (type: string) => ({ type, status: 'True', reason: 'BackoffLimitExceeded', message: 'Job has reached the specified backoff limit', lastProbeTime: now, lastTransitionTime: now });
      const marked = await kube.request('PATCH', `${jobPath}/status`, { status: { active: 0, ready: 0, failed: 1, conditions: [failed('FailureTarget'), failed('Failed')] } }, 'application/merge-patch+json');
      expect(marked.status, JSON.stringify(marked.body)).toBe(200);
      const t0 = Date.now();
      const code = await Promise.race([exited, new Promise<'running'>((r) => setTimeout(() => r('running'), 60_000))]);
      expect(code, output).not.toBe('running');
      expect(code, output).not.toBe(0);
      expect(Date.now() - t0).toBeLessThan(60_000);
      expect(output).toContain(`migration job/${old!.metadata.name} failed`);
    } finally {
      child.kill('SIGTERM');
    }
  }, 300_000);

  it('PRUNE=1 deletes what the preset no longer has, and only that', async () => {
    // An external Postgres: the chart drops its StatefulSet, Services, ConfigMap, PDB and policy.
    const overrides = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wa-deploy-')), 'external-db.yaml');
    fs.writeFileSync(overrides, 'postgres: { mode: external, external: { host: db.internal, port: 5432, database: wa_router } }\n');
    const full = synthManifests('minimal', { namespace: NAMESPACE, image: IMAGE });
    const external = synthManifests('minimal', { namespace: NAMESPACE, image: IMAGE, overrides: { postgres: { mode: 'external', external: { host: 'db.internal', port: 5432, database: 'wa_router' } } } });
    const kept = new Set(external.map((m) => `${m.kind}/${m.metadata.name}`));
    const gone = full.filter((m) => !kept.has(`${m.kind}/${m.metadata.name}`));
    expect(gone.map((m) => `${m.kind}/${m.metadata.name}`)).toContain('StatefulSet/wa-router-postgres');

    deploy({ PRUNE: '1', OVERRIDES: overrides });
    for (const m of gone) expect((await writers(m)).exists, `${m.kind}/${m.metadata.name} pruned`).toBe(false);
    for (const m of external) expect((await writers(m)).exists, `${m.kind}/${m.metadata.name} kept`).toBe(true);
    // The Secrets are not part of the chart's apply set: never pruned.
    expect(await secret('wa-router-postgres')).toBeDefined();

    deploy({ PRUNE: '1' });
    for (const m of gone) expect((await writers(m)).exists, `${m.kind}/${m.metadata.name} back`).toBe(true);
  }, 300_000);
});
