// Regression: the presets run ACK_DURABILITY=replicated with ACK_REPLICA_FALLBACK=local and one
// replica, so that with the only replica restarting, resyncing, or not yet back after a failover,
// acks rest on the master alone (cdk8s/src/charts/wa-router-chart.ts). After Sentinel promoted that
// replica, the web's producer still listed the promoted server among its former replicas, asked it
// its role, heard "master" (its own) and refused the fallback: every webhook answered 503 until the
// old master was back and resynced (23-28 s in the kind runs). The presets' topology: a master, one
// replica, three Sentinels.
import { Redis } from 'ioredis';
import { expect, it } from 'vitest';
import { LOOPBACK } from '../../../scripts/stack/proc.js';
import { postWebhook } from '../helpers/app.js';
import { customerText } from '../helpers/meta-samples.js';
import { webOverSentinelForFile } from '../helpers/sentinel-stack.js';

const cluster = webOverSentinelForFile('fallback-after-failover', { replicas: 1, env: { ACK_DURABILITY: 'replicated', ACK_REPLICAS: '1', ACK_REPLICA_FALLBACK: 'local' } });

const body = (n: number) => customerText('5511900000903', `wamid.FALLBACK-FAILOVER-${n}`, `m${n}`);

it('acks on the promoted master alone (ACK_REPLICA_FALLBACK=local) once Sentinel promoted the only replica and the old master is gone', async () => {
  // Acked with WAIT; the producer learns the replica's address meanwhile.
  for (let n = 0; n < 5; n++) expect((await postWebhook(cluster.app.url, body(n))).status).toBe(200);
  await new Promise((r) => setTimeout(r, 1_500));
  const s = new Redis({ host: LOOPBACK, port: cluster.sentinels[0]!.port });
  const promoted = new Promise<number>((resolve) => {
    s.on('message', () => resolve(Date.now()));
  });
  await s.subscribe('+switch-master');
  await cluster.redis[0]!.kill();
  const killedAt = Date.now();
  const answers: [number, number][] = [];
  let promotedAt = 0;
  void promoted.then((t) => (promotedAt = t));
  try {
    // Bounded: 45 s, one webhook every 100 ms; stop 15 s after the promotion.
    for (let n = 100; Date.now() - killedAt < 45_000 && !(promotedAt && Date.now() - promotedAt > 15_000); n++) {
      const at = Date.now();
      answers.push([at - killedAt, (await postWebhook(cluster.app.url, body(n))).status]);
      await new Promise((r) => setTimeout(r, 100));
    }
  } finally {
    s.disconnect();
  }
  const seen = JSON.stringify({ promotedAfterMs: promotedAt ? promotedAt - killedAt : null, answers });
  expect(promotedAt, seen).toBeGreaterThan(0);
  // From 5 s after the promotion on (room for the web to reach the new master), the fallback acks.
  const late = answers.filter(([t]) => t + killedAt > promotedAt + 5_000);
  expect(late.length, seen).toBeGreaterThan(10);
  expect(late.filter(([, st]) => st !== 200).length, seen).toBe(0);
}, 120_000);
