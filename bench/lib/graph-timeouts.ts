// Chaos scenario "graph-timeouts": sends through the API while the Graph API simulator keeps
// 10% of the messages it accepts without answering (the sender times out, outcome unknown)
// and a worker is SIGKILLed mid-load. Counted at the simulator, not by a UNIQUE column: every
// message accepted exactly once, none left pending.
import pg from 'pg';
import { startGraphSimulator } from '../../scripts/graph-sim/server.js';
import type { HaStack } from '../../scripts/stack/ha.js';
import { freePort, sleep } from '../../scripts/stack/proc.js';

/** The simulator's port, known before the stack starts so its processes can be pointed at it. */
export const GRAPH_SIM_PORT = await freePort();

/**
 * Statuses come this long after the accept: later than a timed-out call's retry would come
 * (timeout + backoff), so a sender that retried blindly would send twice.
 */
const STATUS_DELAY_MS = 6_000;

/** What the service processes run with in this scenario: short timeouts so it ends in minutes. */
export const GRAPH_TIMEOUTS_ENV: Record<string, string> = {
  GRAPH_API_BASE_URL: `http://127.0.0.1:${GRAPH_SIM_PORT}`,
  GRAPH_TIMEOUT_MS: '1000',
  OUTBOUND_BACKOFF_MS: '1000',
  OUTBOUND_UNKNOWN_OUTCOME_GRACE_MS: '10000',
  WORKER_LOCK_MS: '5000',
};

export async function graphTimeouts(stack: HaStack, ctx: { scale: number }) {
  const sim = await startGraphSimulator({
    port: GRAPH_SIM_PORT,
    tokens: { [stack.secrets.phoneNumberId]: stack.secrets.accessToken },
    config: {
      webhookUrl: `${stack.url}/webhooks/whatsapp`, appSecret: stack.secrets.appSecret,
      latencyMs: 5, jitterMs: 10, statusDelayMs: STATUS_DELAY_MS, deliverAndRead: false,
      dropResponseRate: 0.1, dropMode: 'hang',
    },
  });
  const db = new pg.Client({ connectionString: stack.directDatabaseUrl });
  await db.connect();
  try {
    const total = Math.max(100, Math.round(600 * ctx.scale));
    const rate = 40;
    const ids: number[] = [];
    const answers: Record<string, number> = {};
    let requests = 0;
    const t0 = Date.now();
    let killedAt = 0;
    const fault = (async () => {
      await sleep(5_000 * Math.max(ctx.scale, 0.5));
      killedAt = Date.now();
      await stack.workers[0]!.kill();
      await sleep(1_000);
      await stack.workers[0]!.start();
    })();
    const inFlight = new Set<Promise<void>>();
    for (let i = 0; i < total && Date.now() - t0 < 120_000; i++) {
      const due = t0 + (i * 1000) / rate;
      // One clock read: a process descheduled between two reads would ask for a negative delay.
      const wait = due - Date.now();
      if (wait > 0) await sleep(wait);
      const p = (async () => {
        requests++;
        try {
          const res = await fetch(`${stack.url}/v1/messages`, {
            method: 'POST',
            headers: { authorization: `Bearer ${stack.secrets.apiToken}`, 'content-type': 'application/json' },
            body: JSON.stringify({ to: `55119${String(i).padStart(8, '0')}`, type: 'text', text: { body: `chaos ${i}` } }),
            signal: AbortSignal.timeout(10_000),
          });
          answers[res.status] = (answers[res.status] ?? 0) + 1;
          if (res.status === 202) ids.push(((await res.json()) as { id: number }).id);
        } catch {
          answers.error = (answers.error ?? 0) + 1;
        }
      })();
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
      if (inFlight.size >= 32) await Promise.race(inFlight);
    }
    await Promise.all(inFlight);
    await fault;
    // Done when no message is pending any more (accepted ones become `sent` by webhook).
    const deadline = Date.now() + 180_000;
    let pending = ids.length;
    while (Date.now() < deadline) {
      pending = Number((await db.query("SELECT count(*) AS n FROM messages WHERE id = ANY($1::bigint[]) AND status = 'pending'", [ids])).rows[0].n);
      if (pending === 0) break;
      await sleep(250);
    }
    const doneAt = Date.now();
    const rows = (await db.query<{ id: string; wamid: string | null; status: string }>('SELECT id, wamid, status FROM messages WHERE id = ANY($1::bigint[])', [ids])).rows;
    const accepted = sim.acceptedByCallback();
    const times = ids.map((id) => accepted.get(`wr:${id}`) ?? 0);
    const failed = rows.filter((r) => r.status === 'failed').length;
    const stored = rows.filter((r) => r.wamid !== null && r.status !== 'failed').length;
    return {
      sent: total, acked: ids.length, stored, missing: ids.length - stored, duplicated: times.filter((n) => n > 1).length,
      retried: 0, requests, answers, drainSeconds: Math.round((doneAt - t0) / 100) / 10, doneAt,
      recoverySeconds: killedAt ? Math.round((doneAt - killedAt) / 100) / 10 : null,
      recoveredWhen: 'every message out of pending, counted from the worker SIGKILL',
      notes: `${sim.stats.dropped} accepted sends left unanswered; ${pending} left pending; ${failed} failed; ${times.filter((n) => n === 0).length} never accepted; ${sim.stats.accepted} accepted POSTs for ${ids.length} messages`,
    };
  } finally {
    await db.end();
    await sim.close();
  }
}
