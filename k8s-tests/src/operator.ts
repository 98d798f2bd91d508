// The operator as a user runs it: its manifests applied (CRD, namespace, ServiceAccount, RBAC),
// and the process started with a kubeconfig that impersonates its ServiceAccount, so every request
// it makes passes the RBAC the manifests grant and nothing more.
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import YAML from 'yaml';
import { OPERATOR_NAME, OPERATOR_NAMESPACE, operatorManifests } from '@wa-router/cdk8s';
import { eventually, type Kube, type KubeObject } from './kube.js';

const CDK8S = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..', 'cdk8s');

/** Applies the operator's manifests but its Deployment (the tests run the process themselves), which is only dry-run. */
export async function installOperator(kube: Kube): Promise<void> {
  for (const m of operatorManifests() as unknown as KubeObject[]) {
    const r = await kube.apply(m, { dryRun: m.kind === 'Deployment' });
    if (r.status >= 300) throw new Error(`apply ${m.kind}/${m.metadata.name}: ${r.status} ${JSON.stringify(r.body)}`);
  }
  await eventually('the WhatsAppRouter CRD to be established', async () => {
    const crd = await kube.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>('/apis/apiextensions.k8s.io/v1/customresourcedefinitions/whatsapprouters.wa-router.dev');
    return crd?.status?.conditions?.some((c) => c.type === 'Established' && c.status === 'True');
  });
}

/** The admin kubeconfig, changed to act as the operator's ServiceAccount. */
export function serviceAccountKubeconfig(adminKubeconfig: string): string {
  const config = YAML.parse(fs.readFileSync(adminKubeconfig, 'utf8')) as { users: { user: Record<string, unknown> }[] };
  for (const u of config.users) u.user['as'] = `system:serviceaccount:${OPERATOR_NAMESPACE}:${OPERATOR_NAME}`;
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'wa-operator-')), 'kubeconfig');
  fs.writeFileSync(file, YAML.stringify(config), { mode: 0o600 });
  return file;
}

/**
 * The tests' Lease: short, so a takeover is quick to watch, yet with a renew deadline a loaded host
 * meets (at 4 s / 3.5 s a leader lost its Lease to one slow round at load 50 and exited).
 */
export const TEST_LEASE_SECONDS = 10;
export const TEST_RENEW_DEADLINE_SECONDS = 7;

export interface OperatorProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly port: number;
  readonly log: () => string;
  metrics(): Promise<Map<string, number>>;
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Starts `cdk8s/src/operator/main.ts` and waits for its HTTP port. */
export async function startOperator(name: string, kubeconfig: string, env: Record<string, string> = {}): Promise<OperatorProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/operator/main.ts'], {
    cwd: CDK8S,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { PATH: process.env['PATH'] ?? '', KUBECONFIG: kubeconfig, POD_NAME: name, OPERATOR_NAMESPACE, OPERATOR_PORT: '0', OPERATOR_LEASE_SECONDS: String(TEST_LEASE_SECONDS), OPERATOR_RENEW_DEADLINE_SECONDS: String(TEST_RENEW_DEADLINE_SECONDS), LOG_LEVEL: 'info', ...env },
  });
  let out = '';
  child.stdout!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  child.stderr!.on('data', (c: Buffer) => (out += c.toString('utf8')));
  let stopping = false;
  // An operator that exits on its own (a lost Lease, a crash) takes every later check down with it: say why.
  child.once('exit', (code, signal) => {
    if (!stopping) console.error(`[operator] ${name} exited by itself (${code ?? signal}); its last log lines:\n${out.split('\n').slice(-15).join('\n')}`);
  });
  const port = await eventually(`operator ${name} to listen`, async () => {
    if (child.exitCode !== null) throw new Error(`operator ${name} exited ${child.exitCode}: ${out}`);
    const m = /"port":(\d+),"msg":"listening"/.exec(out);
    return m ? Number(m[1]) : undefined;
  }, 60_000, 200);
  return {
    name, child, port,
    log: () => out,
    async metrics() {
      const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
      const values = new Map<string, number>();
      for (const line of text.split('\n')) {
        const m = /^([a-z_]+(?:\{[^}]*\})?) ([0-9.e+-]+)$/.exec(line);
        if (m) values.set(m[1]!, Number(m[2]));
      }
      return values;
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM') {
      if (child.exitCode !== null || child.signalCode !== null) return;
      stopping = true;
      const exited = new Promise((r) => child.once('exit', r));
      child.kill(signal);
      await exited;
    },
  };
}

/** Resident memory of a process, in MiB (Linux). */
export function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}
