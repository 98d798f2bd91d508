// A Kubernetes control plane on loopback for the tests, the way controller-runtime's envtest
// starts one: etcd, kube-apiserver (self-signed serving certificate, a static admin token,
// a service-account key pair), kube-controller-manager and kube-scheduler. No kubelet: Nodes
// are registered by the tests with the capacity they want, and the node-lifecycle controller is
// off so nothing taints them NotReady.
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export interface ControlPlane {
  readonly kubeconfig: string;
  readonly server: string;
  readonly version: string;
  /** What the etcd it stores in reports (`/version`'s etcdserver). */
  readonly etcdVersion: string;
  /** Where kube-apiserver, kubectl, ... were built. */
  readonly binDir: string;
  stop(): Promise<void>;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const a = srv.address();
      srv.close(() => resolve(typeof a === 'object' && a ? a.port : 0));
    });
  });
}

/** Builds the binaries once (cached in ~/.cache/wa-router/k8s-<version>/, see build.sh) and returns their folder. */
export function controlPlaneBinaries(): string {
  return execFileSync(path.join(ROOT, 'scripts', 'controlplane', 'build.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 45 * 60_000 }).trim();
}

/** etcd of the version versions.json names, built once from the Go module proxy (see etcd.sh); ETCD_BIN picks another. */
export function etcdBinary(): string {
  const chosen = process.env['ETCD_BIN'];
  if (chosen) return chosen;
  return execFileSync(path.join(ROOT, 'scripts', 'controlplane', 'etcd.sh'), { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 30 * 60_000 }).trim();
}

function daemon(bin: string, args: string[], logFile: string): ChildProcess {
  const out = fs.openSync(logFile, 'a');
  const child = spawn(bin, args, { stdio: ['ignore', out, out] });
  fs.closeSync(out);
  return child;
}

async function waitUntil(what: string, check: () => Promise<boolean>, child: ChildProcess, logFile: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  const tail = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').split('\n').slice(-25).join('\n') : '';
  throw new Error(`${what} did not become ready (exit ${child.exitCode}); last log lines of ${logFile}:\n${tail}`);
}

function get(url: string, token: string, ca: string): Promise<number> {
  return new Promise((resolve) => {
    const req = https.get(url, { headers: { authorization: `Bearer ${token}` }, ca, timeout: 2_000 }, (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.on('timeout', () => req.destroy());
  });
}

async function stopChild(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((r) => child.once('exit', r));
  child.kill('SIGTERM');
  const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
  await exited;
  clearTimeout(t);
}

export async function startControlPlane(dir: string): Promise<ControlPlane> {
  const bin = controlPlaneBinaries();
  const version = path.basename(bin);
  fs.mkdirSync(dir, { recursive: true });
  const children: ChildProcess[] = [];
  const stop = async () => {
    for (const c of children.reverse()) await stopChild(c);
  };
  try {
    const etcdPort = await freePort();
    const etcdPeer = await freePort();
    const etcdLog = path.join(dir, 'etcd.log');
    const etcd = daemon(etcdBinary(), [
      '--data-dir', path.join(dir, 'etcd'), '--name', 'wa-test',
      '--listen-client-urls', `http://127.0.0.1:${etcdPort}`, '--advertise-client-urls', `http://127.0.0.1:${etcdPort}`,
      '--listen-peer-urls', `http://127.0.0.1:${etcdPeer}`, '--initial-advertise-peer-urls', `http://127.0.0.1:${etcdPeer}`,
      '--initial-cluster', `wa-test=http://127.0.0.1:${etcdPeer}`,
      // Tests only: the data is thrown away, fsync latency is not worth paying.
      '--unsafe-no-fsync', '--quota-backend-bytes', String(2 * 2 ** 30),
    ], etcdLog);
    children.push(etcd);
    await waitUntil('etcd', async () => (await fetch(`http://127.0.0.1:${etcdPort}/health`)).ok, etcd, etcdLog);
    const etcdVersion = ((await (await fetch(`http://127.0.0.1:${etcdPort}/version`)).json()) as { etcdserver: string }).etcdserver;

    const certs = path.join(dir, 'certs');
    fs.mkdirSync(certs, { recursive: true });
    const { publicKey, privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048, publicKeyEncoding: { type: 'spki', format: 'pem' }, privateKeyEncoding: { type: 'pkcs8', format: 'pem' } });
    fs.writeFileSync(path.join(certs, 'sa.pub'), publicKey);
    fs.writeFileSync(path.join(certs, 'sa.key'), privateKey, { mode: 0o600 });
    const token = randomBytes(24).toString('hex');
    fs.writeFileSync(path.join(certs, 'tokens.csv'), `${token},admin,admin,system:masters\n`, { mode: 0o600 });

    const apiPort = await freePort();
    const apiLog = path.join(dir, 'kube-apiserver.log');
    const api = daemon(path.join(bin, 'kube-apiserver'), [
      `--etcd-servers=http://127.0.0.1:${etcdPort}`,
      '--bind-address=127.0.0.1', '--advertise-address=127.0.0.1', `--secure-port=${apiPort}`,
      `--cert-dir=${certs}`,
      `--token-auth-file=${path.join(certs, 'tokens.csv')}`,
      '--authorization-mode=RBAC',
      '--service-cluster-ip-range=10.96.0.0/16',
      '--service-account-issuer=https://kubernetes.default.svc.cluster.local',
      `--service-account-key-file=${path.join(certs, 'sa.pub')}`,
      `--service-account-signing-key-file=${path.join(certs, 'sa.key')}`,
      '--allow-privileged=true',
      '--endpoint-reconciler-type=none',
    ], apiLog);
    children.push(api);
    const server = `https://127.0.0.1:${apiPort}`;
    // With no --tls-cert-file the API server writes a self-signed certificate into --cert-dir.
    const caFile = path.join(certs, 'apiserver.crt');
    await waitUntil('kube-apiserver', async () => fs.existsSync(caFile) && (await get(`${server}/readyz`, token, fs.readFileSync(caFile, 'utf8'))) === 200, api, apiLog, 90_000);

    const kubeconfig = path.join(dir, 'kubeconfig');
    const ca = Buffer.from(fs.readFileSync(caFile)).toString('base64');
    fs.writeFileSync(kubeconfig, [
      'apiVersion: v1', 'kind: Config', 'current-context: wa-test',
      'clusters:', `- name: wa-test`, '  cluster:', `    server: ${server}`, `    certificate-authority-data: ${ca}`,
      'users:', '- name: admin', '  user:', `    token: ${token}`,
      'contexts:', '- name: wa-test', '  context:', '    cluster: wa-test', '    user: admin',
      '',
    ].join('\n'), { mode: 0o600 });

    const common = [`--kubeconfig=${kubeconfig}`, `--authentication-kubeconfig=${kubeconfig}`, `--authorization-kubeconfig=${kubeconfig}`, '--leader-elect=false', '--bind-address=127.0.0.1'];
    const kcmLog = path.join(dir, 'kube-controller-manager.log');
    const kcm = daemon(path.join(bin, 'kube-controller-manager'), [
      ...common, `--secure-port=${await freePort()}`,
      `--service-account-private-key-file=${path.join(certs, 'sa.key')}`,
      `--root-ca-file=${caFile}`,
      // No kubelet keeps Node leases fresh: the lifecycle controller would taint every node NotReady.
      '--controllers=*,-node-lifecycle-controller',
      '--use-service-account-credentials=false',
    ], kcmLog);
    children.push(kcm);
    const schedLog = path.join(dir, 'kube-scheduler.log');
    const scheduler = daemon(path.join(bin, 'kube-scheduler'), [...common, `--secure-port=${await freePort()}`], schedLog);
    children.push(scheduler);
    // Both are up once their first log lines appear and they have not exited.
    await new Promise((r) => setTimeout(r, 1_500));
    for (const [c, log] of [[kcm, kcmLog], [scheduler, schedLog]] as const) {
      if (c.exitCode !== null) throw new Error(`${path.basename(log, '.log')} exited ${c.exitCode}:\n${fs.readFileSync(log, 'utf8').split('\n').slice(-20).join('\n')}`);
    }
    return { kubeconfig, server, version, etcdVersion, binDir: bin, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
