// The operator's image as its Deployment runs it: built by `make operator-image` (cached by a hash of
// its tree: an unchanged tree is not rebuilt), run as the image's non-root user with a read-only root
// filesystem and only /tmp writable, against the suite's control plane through a mounted kubeconfig
// that impersonates the operator's ServiceAccount. A machine that cannot run containers still builds
// the image; only the run is skipped, saying why.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { OPERATOR_FIELD_MANAGER, OPERATOR_NAMESPACE } from '@wa-router/cdk8s';
import { deleteNamespace } from '../src/cluster.js';
import { eventually, Kube, type KubeObject } from '../src/kube.js';
import { installOperator, serviceAccountKubeconfig, TEST_LEASE_SECONDS, TEST_RENEW_DEADLINE_SECONDS } from '../src/operator.js';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../..', import.meta.url));
const IMAGE = 'localhost/wa-router-operator:test';
const NS = 'wa-op-image';
const engine = spawnSync('docker', ['info'], { stdio: 'ignore' }).status === 0 ? 'docker' : 'podman';
const engineEnv = { ...process.env, STORAGE_DRIVER: process.env['STORAGE_DRIVER'] ?? 'vfs' };
const run = async (...args: string[]) => (await exec(engine, args, { env: engineEnv, maxBuffer: 16 << 20 })).stdout.trim();
const ulimits = spawnSync(`${ROOT}/scripts/image/ulimits.sh`).stdout.toString().trim().split(' ').filter(Boolean);
const kube = new Kube(inject('kubeconfig'));
const name = `wa-router-operator-${randomBytes(4).toString('hex')}`;
let cannotRun: string | undefined;

type Router = KubeObject & { status?: { observedGeneration?: number; appliedObjects?: number } };

describe.runIf(inject('localControlPlane'))('the operator image', () => {
  beforeAll(async () => {
    const t0 = Date.now();
    const built = await exec(`${ROOT}/scripts/image/build.sh`, [], {
      cwd: ROOT,
      env: { ...engineEnv, TARGET: 'operator', IMAGE, CONTAINER_ENGINE: engine },
      maxBuffer: 64 << 20,
    }).catch((err: { stderr?: string; message: string }) => {
      throw new Error(`make operator-image failed: ${err.message}\n${(err.stderr ?? '').slice(-4000)}`);
    });
    console.log(`operator image: ${engine}, ${/up to date/.test(built.stderr) ? 'unchanged tree, not rebuilt' : 'built'} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    const base = engine === 'docker' ? 'node:24-bookworm-slim' : (await exec(`${ROOT}/scripts/image/base.sh`, [], { cwd: ROOT, env: engineEnv })).stdout.trim();
    try {
      await run('run', '--rm', '--network', 'host', ...ulimits, '--entrypoint', 'node', base, '-e', '0');
    } catch (err) {
      cannotRun = `${engine} cannot run containers on this machine (base image ${base}): ${String((err as Error).message).split('\n').slice(0, 3).join(' ')}`;
    }
    await installOperator(kube);
    // A Lease left by an operator another file killed would hold this one back for its lease time.
    await kube.delete(`/apis/coordination.k8s.io/v1/namespaces/${OPERATOR_NAMESPACE}/leases/wa-router-operator`);
    const r = await kube.apply({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: NS } });
    if (r.status >= 300) throw new Error(`namespace ${NS}: ${r.status}`);
  }, 45 * 60_000);

  afterAll(async () => {
    await run('rm', '-f', '-t', '5', name).catch(() => undefined);
    await deleteNamespace(kube, NS);
  });

  it('runs as uid 1000 on a read-only root, serves /readyz as the leader and reconciles a resource', async (ctx) => {
    if (cannotRun) ctx.skip(cannotRun);
    // The image's user must read the mounted kubeconfig (a Secret volume's files are 0644 too).
    const kubeconfig = serviceAccountKubeconfig(inject('kubeconfig'));
    fs.chmodSync(kubeconfig, 0o644);
    await run('run', '-d', '--name', name, '--network', 'host', '--read-only', ...(engine === 'podman' ? ['--read-only-tmpfs=false'] : []),
      '--tmpfs', '/tmp:rw,size=64m', ...ulimits, '--volume', `${kubeconfig}:/etc/wa-router/kubeconfig:ro`,
      '-e', 'KUBECONFIG=/etc/wa-router/kubeconfig', '-e', `POD_NAME=${name}`, '-e', `OPERATOR_NAMESPACE=${OPERATOR_NAMESPACE}`,
      '-e', 'OPERATOR_PORT=0', '-e', `OPERATOR_LEASE_SECONDS=${TEST_LEASE_SECONDS}`, '-e', `OPERATOR_RENEW_DEADLINE_SECONDS=${TEST_RENEW_DEADLINE_SECONDS}`, IMAGE);
    const logs = () => run('logs', '--tail', '60', name).catch((e: Error) => e.message);
    const port = await eventually('the operator container to listen', async () => {
      const m = /"port":(\d+),"msg":"listening"/.exec(await logs());
      return m ? Number(m[1]) : undefined;
    }, 120_000, 500).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await logs()}`);
    });
    const readyz = await eventually('/readyz as the leader with its caches filled', async () => {
      const r = await fetch(`http://127.0.0.1:${port}/readyz`);
      const body = (await r.json()) as { leader: boolean; synced: boolean };
      return r.status === 200 && body.leader ? body : undefined;
    }, 60_000, 250).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await logs()}`);
    });
    expect(readyz).toEqual({ leader: true, synced: true });

    expect(await run('exec', name, 'id', '-u')).toBe('1000');
    await expect(run('exec', name, 'sh', '-c', 'touch /app/cdk8s/written')).rejects.toThrow(/Read-only file system/);

    const created = await kube.request<Router>('POST', `/apis/wa-router.dev/v1alpha1/namespaces/${NS}/whatsapprouters`, {
      apiVersion: 'wa-router.dev/v1alpha1', kind: 'WhatsAppRouter', metadata: { name: 'router', namespace: NS }, spec: { preset: 'minimal', image: 'registry.example/wa-router:image-test' },
    });
    expect(created.status).toBe(201);
    const router = await eventually('the resource reconciled by the container', async () => {
      const r = await kube.get<Router>(`/apis/wa-router.dev/v1alpha1/namespaces/${NS}/whatsapprouters/router`);
      return r?.status?.observedGeneration === created.body.metadata.generation ? r : undefined;
    }, 120_000, 500).catch(async (e: Error) => {
      throw new Error(`${e.message}\n${await logs()}`);
    });
    expect(router.status?.appliedObjects).toBeGreaterThan(0);
    const web = await kube.get(`/apis/apps/v1/namespaces/${NS}/deployments/wa-router-web`);
    expect(web?.metadata.managedFields?.some((f) => f.manager === OPERATOR_FIELD_MANAGER && f.operation === 'Apply')).toBe(true);
    expect(web?.metadata.ownerReferences?.[0]?.uid).toBe(router.metadata.uid);
  }, 5 * 60_000);
});
