// `make deploy` (scripts/deploy.sh) against the API server: it creates the four Secrets the
// manifests read, applies server-side as our field manager, and never overwrites a Secret.
import { execFileSync } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, inject, it } from 'vitest';
import { deleteNamespace } from '../src/cluster.js';
import { FIELD_MANAGER, Kube, type KubeObject } from '../src/kube.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const kube = new Kube(inject('kubeconfig'));
const NAMESPACE = 'wa-deploy';

type Secret = KubeObject & { data: Record<string, string> };
const secret = async (name: string) => kube.get<Secret>(`/api/v1/namespaces/${NAMESPACE}/secrets/${name}`);
const decode = (s: Secret | undefined, key: string) => Buffer.from(s?.data[key] ?? '', 'base64').toString('utf8');

function deploy(extra: Record<string, string>): string {
  return execFileSync(path.join(ROOT, 'scripts', 'deploy.sh'), {
    cwd: ROOT, encoding: 'utf8', timeout: 180_000, stdio: ['ignore', 'pipe', 'pipe'],
    env: {
      ...process.env, PATH: `${inject('binDir')}:${process.env['PATH'] ?? ''}`, KUBECONFIG: inject('kubeconfig'),
      PRESET: 'minimal', NAMESPACE, IMAGE: 'registry.example/wa-router:test', WAIT: '0', ...extra,
    },
  });
}

describe.runIf(inject('binDir'))('make deploy', () => {
  afterAll(async () => deleteNamespace(kube, NAMESPACE));

  it('creates the Secrets, applies the preset server-side, and keeps existing Secrets on a second run', async () => {
    deploy({ WHATSAPP_APP_SECRET: 'first-app-secret', DB_PASSWORD: 'first0db0password' });
    const app = await secret('wa-router-app');
    expect(decode(app, 'WHATSAPP_APP_SECRET')).toBe('first-app-secret');
    expect(decode(app, 'API_TOKEN')).toMatch(/^[0-9a-f]{48}$/);
    expect(decode(await secret('wa-router-postgres'), 'password')).toBe('first0db0password');
    expect(decode(await secret('wa-router-pgbouncer'), 'userlist.txt')).toBe('"wa_router" "first0db0password"');
    expect(decode(await secret('wa-router-redis'), 'password')).toMatch(/^[0-9a-f]{48}$/);
    const web = await kube.get<KubeObject>(`/apis/apps/v1/namespaces/${NAMESPACE}/deployments/wa-router-web`);
    expect(web?.metadata.managedFields?.filter((f) => f.operation === 'Apply').map((f) => f.manager)).toEqual([FIELD_MANAGER]);
    const ns = await kube.get<KubeObject>(`/api/v1/namespaces/${NAMESPACE}`);
    expect(ns?.metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe('restricted');

    const out = deploy({ WHATSAPP_APP_SECRET: 'second-app-secret', DB_PASSWORD: 'second0password' });
    expect(out).toMatch(/secret\/wa-router-postgres exists: kept/);
    expect(decode(await secret('wa-router-app'), 'WHATSAPP_APP_SECRET')).toBe('first-app-secret');
    expect(decode(await secret('wa-router-pgbouncer'), 'userlist.txt')).toBe('"wa_router" "first0db0password"');
  }, 240_000);
});
