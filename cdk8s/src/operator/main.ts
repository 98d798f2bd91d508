// The operator's process: `node --import tsx cdk8s/src/operator/main.ts` (the image's `operator`
// target). Serves /healthz, /readyz and /metrics at once; reconciles only while it holds the Lease.
import http from 'node:http';
import { pino } from 'pino';
import { loadConfig } from './config.js';
import { Controller } from './controller.js';
import { KubeApi } from './kube-api.js';
import { LeaderElector } from './leader.js';
import { OperatorMetrics } from './metrics.js';
import { RenderPool } from './renderer.js';

let config;
try {
  config = loadConfig();
} catch (err) {
  process.stderr.write(`${(err as Error).message}\n`);
  process.exit(2);
}
const log = pino({ level: config.LOG_LEVEL, base: { pod: config.POD_NAME } });
const metrics = new OperatorMetrics();
let api: KubeApi;
try {
  api = new KubeApi(config.KUBECONFIG);
} catch (err) {
  process.stderr.write(`invalid operator configuration:\n  KUBECONFIG: ${(err as Error).message}\n`);
  process.exit(2);
}
api.onRequest = (verb) => metrics.apiRequests.inc({ verb });
const renderer = new RenderPool({ threads: config.OPERATOR_RENDER_THREADS, timeoutMs: config.OPERATOR_RENDER_TIMEOUT_SECONDS * 1000 });
const controller = new Controller(api, log, metrics, {
  workers: config.OPERATOR_WORKERS,
  resyncMs: config.OPERATOR_RESYNC_SECONDS * 1000,
  render: (cr) => renderer.render(cr),
  mayWrite: () => elector.holdsLease,
});

const renewDeadlineMs = (config.OPERATOR_RENEW_DEADLINE_SECONDS ?? (config.OPERATOR_LEASE_SECONDS * 2) / 3) * 1000;
const elector = new LeaderElector(api, log, {
  namespace: config.OPERATOR_NAMESPACE,
  name: 'wa-router-operator',
  identity: config.POD_NAME,
  leaseDurationSeconds: config.OPERATOR_LEASE_SECONDS,
  // Three tries at least within the renew deadline: one slow round must not end the leadership.
  retryMs: Math.min(2_000, (config.OPERATOR_LEASE_SECONDS * 1000) / 5, renewDeadlineMs / 3),
  renewDeadlineMs,
  onStartedLeading: () => {
    metrics.leader.set(1);
    controller.start().catch((err: unknown) => {
      log.error({ err: (err as Error).message }, 'controller failed to start');
      process.exit(1);
    });
  },
  // Another replica may lead by now: stop at once rather than reconcile beside it.
  onStoppedLeading: () => process.exit(1),
});

const server = http.createServer((req, res) => {
  const url = req.url ?? '/';
  if (url === '/healthz') {
    // Alive is making progress: a reconcile held past the bound (a hung API call, a render the
    // timeout could not end) is a process to restart.
    const stuckMs = controller.longestReconcileMs();
    if (stuckMs > config.OPERATOR_STALL_SECONDS * 1000) res.writeHead(503, { 'content-type': 'text/plain' }).end(`a reconcile has run for ${Math.round(stuckMs / 1000)} s`);
    else res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  } else if (url === '/readyz') {
    // A standby is ready (it serves its purpose by waiting); a leader once its caches are filled.
    const ready = !elector.isLeader || controller.synced;
    res.writeHead(ready ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ leader: elector.isLeader, synced: controller.synced }));
  } else if (url === '/metrics') {
    void metrics.registry.metrics().then((text) => res.writeHead(200, { 'content-type': metrics.registry.contentType }).end(text));
  } else {
    res.writeHead(404).end();
  }
});
server.listen(config.OPERATOR_PORT, () => {
  const addr = server.address();
  log.info({ port: typeof addr === 'object' && addr ? addr.port : config.OPERATOR_PORT }, 'listening');
  elector.start();
});

let stopping = false;
for (const signal of ['SIGTERM', 'SIGINT'] as const) {
  process.on(signal, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'stopping');
    void (async () => {
      await controller.stop();
      await renderer.stop();
      await elector.stop().catch(() => {});
      server.close();
      process.exit(0);
    })();
  });
}
