// End to end in a real cluster running a preset (`make kind-up`, then `make kind-test`): a signed
// webhook sent to the web Service is stored; an outbound message reaches a Graph API simulator
// running in the cluster and its status webhooks come back; the Redis master pod is deleted while
// webhooks keep being acked (Sentinel promotes the replica); the worker is scaled to 0 and back with
// nothing lost. Skipped unless K8S_TESTS_KIND_NAMESPACE names the namespace the preset runs in.
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHmac, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';

const run = promisify(execFile);
const NAMESPACE = process.env['K8S_TESTS_KIND_NAMESPACE'] ?? '';
const KUBECTL = process.env['K8S_TESTS_KUBECTL'] ?? 'kubectl';
const IMAGE = process.env['K8S_TESTS_KIND_IMAGE'] ?? '';
const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const PHONE_NUMBER_ID = '109000000000001';
const GRAPH_TOKEN = 'kind-graph-token';
const CUSTOMER = '16505550199';
const SIM = 'kind-graph-sim';
const SIM_PORT = 4010;
// Where web and worker send to Meta: the simulator's Service. A variable so that the outbound check
// can be seen failing against a wrong address (scripts/kind/README.md, the mutation runs).
const GRAPH_URL = process.env['K8S_TESTS_KIND_GRAPH_URL'] ?? `http://${SIM}:${SIM_PORT}`;

async function kubectl(...args: string[]): Promise<string> {
  const { stdout } = await run(KUBECTL, ['--kubeconfig', inject('kubeconfig'), '-n', NAMESPACE, ...args], { maxBuffer: 16 << 20 });
  return stdout;
}

async function eventually<T>(fn: () => Promise<T | null | undefined | false>, what: string, timeoutMs = 60_000, intervalMs = 500): Promise<T> {
  const until = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

/** `kubectl port-forward` on a free local port; resolves with that port once it forwards. */
function portForward(target: string, remotePort: number): Promise<{ port: number; proc: ChildProcess }> {
  const proc = spawn(KUBECTL, ['--kubeconfig', inject('kubeconfig'), '-n', NAMESPACE, 'port-forward', target, `:${remotePort}`], { stdio: ['ignore', 'pipe', 'pipe'] });
  return new Promise((resolve, reject) => {
    let err = '';
    const timer = setTimeout(() => reject(new Error(`port-forward ${target}: no answer in 120 s ${err}`)), 120_000);
    proc.stdout.on('data', (chunk: Buffer) => {
      const m = /Forwarding from 127\.0\.0\.1:(\d+)/.exec(chunk.toString());
      if (m) {
        clearTimeout(timer);
        resolve({ port: Number(m[1]), proc });
      }
    });
    proc.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
    proc.on('exit', (code) => reject(new Error(`port-forward ${target} exited ${code}: ${err}`)));
  });
}

function inboundText(wamid: string, body: string): unknown {
  return {
    object: 'whatsapp_business_account',
    entry: [{
      id: '102000000000001',
      changes: [{
        field: 'messages',
        value: {
          messaging_product: 'whatsapp',
          metadata: { display_phone_number: '15550000001', phone_number_id: PHONE_NUMBER_ID },
          contacts: [{ profile: { name: 'Kind Customer' }, wa_id: CUSTOMER }],
          messages: [{ from: CUSTOMER, id: wamid, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body } }],
        },
      }],
    }],
  };
}

describe.skipIf(!NAMESPACE)(`a preset running in a kind cluster (namespace ${NAMESPACE || 'unset: skipped, run make kind-test'})`, () => {
  let base = '';
  let appSecret = '';
  let apiToken = '';
  const forwards: ChildProcess[] = [];

  const api = async (method: string, p: string, body?: unknown) => {
    const res = await fetch(base + p, {
      method,
      headers: { authorization: `Bearer ${apiToken}`, ...(body === undefined ? {} : { 'content-type': 'application/json' }) },
      ...(body === undefined ? {} : { body: JSON.stringify(body) }),
      signal: AbortSignal.timeout(10_000),
    });
    return { status: res.status, body: (await res.json().catch(() => null)) as Record<string, unknown> | null };
  };
  const postWebhook = async (wamid: string, text: string, timeoutMs = 10_000) => {
    const raw = JSON.stringify(inboundText(wamid, text));
    const signature = 'sha256=' + createHmac('sha256', appSecret).update(raw).digest('hex');
    const res = await fetch(`${base}/webhooks/whatsapp`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-hub-signature-256': signature },
      body: raw,
      signal: AbortSignal.timeout(timeoutMs),
    });
    await res.arrayBuffer();
    return res.status;
  };
  const stored = async (wamid: string) => (await api('GET', `/v1/messages?wamid=${encodeURIComponent(wamid)}`)).status === 200;
  const web = async () => {
    const f = await portForward('service/wa-router-web', 3000);
    forwards.push(f.proc);
    base = `http://127.0.0.1:${f.port}`;
  };

  beforeAll(async () => {
    const secret = JSON.parse(await kubectl('get', 'secret', 'wa-router-app', '-o', 'json')) as { data: Record<string, string> };
    const decode = (k: string) => Buffer.from(secret.data[k] ?? '', 'base64').toString('utf8');
    appSecret = decode('WHATSAPP_APP_SECRET');
    apiToken = decode('API_TOKEN');
    expect(IMAGE, 'K8S_TESTS_KIND_IMAGE (the wa-router image loaded in the cluster)').not.toBe('');

    // The Graph API simulator, bundled into one file and run by the wa-router image (it has Node).
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-kind-sim-'));
    await run(path.join(ROOT, 'node_modules/.bin/esbuild'), ['scripts/graph-sim/main.ts', '--bundle', '--platform=node', '--format=esm', `--outfile=${dir}/graph-sim.mjs`, '--log-level=warning',
      // busboy is CommonJS: its require('stream') needs a require in the ES module bundle.
      "--banner:js=import { createRequire } from 'node:module'; const require = createRequire(import.meta.url);"], { cwd: ROOT });
    const cm = await run(KUBECTL, ['-n', NAMESPACE, 'create', 'configmap', SIM, `--from-file=${dir}/graph-sim.mjs`, '--dry-run=client', '-o', 'json']);
    fs.rmSync(dir, { recursive: true, force: true });
    const labels = { 'app.kubernetes.io/name': SIM };
    const restricted = { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } };
    const objects = [
      JSON.parse(cm.stdout) as unknown,
      {
        apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: SIM, labels },
        spec: {
          replicas: 1, selector: { matchLabels: labels },
          template: {
            metadata: { labels },
            spec: {
              securityContext: { runAsNonRoot: true, runAsUser: 1000, runAsGroup: 1000, seccompProfile: { type: 'RuntimeDefault' } },
              volumes: [{ name: 'sim', configMap: { name: SIM } }],
              containers: [{
                name: 'sim', image: IMAGE, imagePullPolicy: 'IfNotPresent', securityContext: restricted,
                command: ['node', '/sim/graph-sim.mjs', '--host', '0.0.0.0', '--port', String(SIM_PORT), '--latency-ms', '5',
                  '--webhook', 'http://wa-router-web:3000/webhooks/whatsapp', '--app-secret', appSecret, '--token', `${PHONE_NUMBER_ID}=${GRAPH_TOKEN}`],
                ports: [{ name: 'http', containerPort: SIM_PORT }],
                readinessProbe: { tcpSocket: { port: SIM_PORT }, periodSeconds: 2 },
                volumeMounts: [{ name: 'sim', mountPath: '/sim' }],
                resources: { requests: { cpu: '10m', memory: '64Mi' }, limits: { memory: '256Mi' } },
              }],
            },
          },
        },
      },
      { apiVersion: 'v1', kind: 'Service', metadata: { name: SIM, labels }, spec: { selector: labels, ports: [{ name: 'http', port: SIM_PORT, targetPort: SIM_PORT }] } },
    ];
    const file = path.join(os.tmpdir(), `wa-kind-sim-${randomUUID()}.json`);
    fs.writeFileSync(file, JSON.stringify({ apiVersion: 'v1', kind: 'List', items: objects }));
    try {
      await kubectl('apply', '--server-side', '--force-conflicts', '--field-manager=wa-router-kind-test', '-f', file);
    } finally {
      fs.rmSync(file, { force: true });
    }
    await kubectl('rollout', 'status', `deployment/${SIM}`, '--timeout=180s');
    // Sends go to the simulator (the preset sets no Graph API URL: Meta's is the default).
    const graph = `GRAPH_API_BASE_URL=${GRAPH_URL}`;
    await kubectl('set', 'env', 'deployment/wa-router-web', 'deployment/wa-router-worker', graph);
    await kubectl('rollout', 'status', 'deployment/wa-router-web', '--timeout=300s');
    await kubectl('rollout', 'status', 'deployment/wa-router-worker', '--timeout=300s');
    await web();
    const channel = await api('POST', '/v1/channels', { phoneNumberId: PHONE_NUMBER_ID, accessToken: GRAPH_TOKEN, name: 'kind' });
    expect([200, 201], JSON.stringify(channel.body)).toContain(channel.status);
  }, 900_000);

  afterAll(() => {
    for (const p of forwards) p.kill();
  });

  it('stores a signed webhook sent to the web Service', async () => {
    const wamid = `wamid.KIND-${randomUUID()}`;
    expect(await postWebhook(wamid, 'hello from the cluster')).toBe(200);
    const m = await eventually(async () => {
      const r = await api('GET', `/v1/messages?wamid=${encodeURIComponent(wamid)}`);
      return r.status === 200 ? r.body : null;
    }, 'the webhook stored');
    expect(m).toMatchObject({ wamid, direction: 'inbound' });
    // An unsigned copy is refused and nothing of it is stored.
    const forged = `wamid.KIND-${randomUUID()}`;
    const res = await fetch(`${base}/webhooks/whatsapp`, { method: 'POST', headers: { 'content-type': 'application/json', 'x-hub-signature-256': 'sha256=00' }, body: JSON.stringify(inboundText(forged, 'forged')) });
    expect(res.status).toBe(401);
    expect(await stored(forged)).toBe(false);
  });

  it('sends an outbound message to the Graph API simulator in the cluster and follows its statuses', async () => {
    const res = await api('POST', '/v1/messages', { to: CUSTOMER, type: 'text', text: { body: 'sent from the cluster' } });
    expect(res.status, JSON.stringify(res.body)).toBe(202);
    const m = await eventually(async () => {
      const r = await api('GET', `/v1/messages/${String(res.body?.['id'])}`);
      return r.body?.['status'] === 'read' ? r.body : null;
    }, 'the message sent, delivered and read', 90_000);
    expect(String(m['wamid'])).toMatch(/^wamid\./);
  });

  it('keeps acking webhooks while the Redis master pod is deleted and Sentinel promotes the replica', async () => {
    const role = async (pod: string) => (await kubectl('exec', pod, '-c', 'redis', '--', 'sh', '-c', 'REDISCLI_AUTH="$REDIS_PASSWORD" redis-cli --no-auth-warning role')).split('\n')[0]?.trim();
    const pods = (await kubectl('get', 'pods', '-l', 'app.kubernetes.io/component=redis', '-o', 'name')).trim().split('\n').map((p) => p.replace('pod/', ''));
    expect(pods.length, 'Redis pods (a master and a replica)').toBeGreaterThanOrEqual(2);
    const roles = await Promise.all(pods.map(async (p) => [p, await role(p)] as const));
    const master = roles.find(([, r]) => r === 'master')?.[0];
    expect(master, JSON.stringify(roles)).toBeDefined();

    const acked: string[] = [];
    const ackedAt: number[] = [];
    const refused: { at: number; what: string }[] = [];
    let stop = false;
    let deletedAt = 0;
    const started = Date.now();
    const sender = (async () => {
      // Bounded: at most 3 minutes and 2,000 webhooks.
      for (let i = 0; i < 2_000 && !stop && Date.now() - started < 180_000; i++) {
        const wamid = `wamid.KIND-FAILOVER-${i}-${randomUUID()}`;
        try {
          const status = await postWebhook(wamid, `during failover ${i}`, 5_000);
          if (status === 200) {
            acked.push(wamid);
            ackedAt.push(Date.now());
          } else refused.push({ at: Date.now(), what: String(status) });
        } catch (err) {
          refused.push({ at: Date.now(), what: String(err) });
        }
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    await new Promise((r) => setTimeout(r, 3_000));
    expect(acked.length, 'webhooks acked before the deletion').toBeGreaterThan(0);
    deletedAt = Date.now();
    await kubectl('delete', 'pod', master!, '--wait=false');
    const promoted = await eventually(async () => {
      for (const p of pods.filter((x) => x !== master)) if ((await role(p).catch(() => '')) === 'master') return p;
      return null;
    }, 'a replica promoted to master', 120_000, 250);
    const promotedMs = Date.now() - deletedAt;
    // Acks after the promotion: 20 in a row (the sender sends one at a time, so 20 acks after the
    // last refusal are 20 in a row; a request still hanging is no refusal yet, and no ack either).
    await eventually(async () => {
      const since = Math.max(refused.at(-1)?.at ?? 0, deletedAt + promotedMs);
      return ackedAt.filter((t) => t > since).length >= 20;
    }, 'webhooks acked again', 120_000, 250);
    stop = true;
    await sender;
    const during = refused.filter((r) => r.at >= deletedAt);
    const recoveryMs = during.length ? during.at(-1)!.at - deletedAt : 0;
    console.log(`kind failover: ${promoted} promoted ${promotedMs} ms after ${master} was deleted; ${acked.length} webhooks acked, ${refused.length} refused (last ${recoveryMs} ms after the deletion): ${[...new Set(refused.map((r) => r.what))].join('; ')}`);
    // Every acked webhook is stored: an ack is a promise the promotion must not break.
    await eventually(async () => {
      const missing = (await Promise.all(acked.map(async (w) => ((await stored(w)) ? null : w)))).filter(Boolean);
      return missing.length === 0 || null;
    }, `all ${acked.length} acked webhooks stored`, 120_000, 2_000);
    expect(recoveryMs, 'time webhooks were refused after the master pod went').toBeLessThan(60_000);
  }, 600_000);

  it('loses nothing while the worker is scaled to 0 and back', async () => {
    const deployment = 'deployment/wa-router-worker';
    // At least 1: a worker left at 0 is a broken cluster, not the count to restore.
    const replicas = Math.max(1, Number((await kubectl('get', deployment, '-o', 'jsonpath={.spec.replicas}')).trim()) || 0);
    const wamids = Array.from({ length: 20 }, (_, i) => `wamid.KIND-NOWORKER-${i}-${randomUUID()}`);
    await kubectl('scale', deployment, '--replicas=0');
    try {
      await eventually(async () => (await kubectl('get', 'pods', '-l', 'app.kubernetes.io/component=worker', '-o', 'name')).trim() === '', 'the worker pods gone', 120_000, 1_000);
      // A 503 is retried for a while, as Meta retries it (Redis may still be settling after the
      // failover check: that is not the worker's doing); any other answer, or no answer, fails.
      for (const w of wamids) {
        let status = await postWebhook(w, 'while no worker runs');
        for (const until = Date.now() + 90_000; status === 503 && Date.now() < until; ) {
          await new Promise((r) => setTimeout(r, 1_000));
          status = await postWebhook(w, 'while no worker runs');
        }
        expect(status, `webhook ${w}`).toBe(200);
      }
      // Acked, queued, and not stored: the worker is what stores them.
      await new Promise((r) => setTimeout(r, 3_000));
      expect(await stored(wamids[0]!)).toBe(false);
    } finally {
      // Also when a step above fails: a worker left at 0 made the next run store nothing.
      await kubectl('scale', deployment, `--replicas=${replicas}`);
    }
    await kubectl('rollout', 'status', deployment, '--timeout=300s');
    await eventually(async () => {
      const missing = (await Promise.all(wamids.map(async (w) => ((await stored(w)) ? null : w)))).filter(Boolean);
      return missing.length === 0 || null;
    }, 'every webhook acked while no worker ran stored', 120_000, 1_000);
  }, 900_000);
});
