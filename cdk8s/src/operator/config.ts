// The operator's environment, parsed once at boot; a wrong value stops it naming the variable.
import os from 'node:os';
import { z } from 'zod';

/** What a reconcile may spend besides its render: the applies, the prune and the status write. */
const APPLY_MARGIN_SECONDS = 60;

/** The longest a healthy reconcile takes: every worker renders at once, this one on the last free thread. */
function worstReconcileSeconds(c: { OPERATOR_WORKERS: number; OPERATOR_RENDER_THREADS: number; OPERATOR_RENDER_TIMEOUT_SECONDS: number }): number {
  return Math.ceil(c.OPERATOR_WORKERS / c.OPERATOR_RENDER_THREADS) * c.OPERATOR_RENDER_TIMEOUT_SECONDS + APPLY_MARGIN_SECONDS;
}

const schema = z.object({
  /** Where the leader Lease lives (the Deployment sets it from the pod's namespace). */
  OPERATOR_NAMESPACE: z.string().min(1).default('wa-router-system'),
  /** This replica's identity in the Lease. */
  POD_NAME: z.string().min(1).default(os.hostname()),
  /** /healthz, /readyz and /metrics. */
  OPERATOR_PORT: z.coerce.number().int().min(0).max(65_535).default(8080),
  OPERATOR_WORKERS: z.coerce.number().int().min(1).max(64).default(4),
  OPERATOR_LEASE_SECONDS: z.coerce.number().int().min(2).max(300).default(15),
  /** How long a leader may go without renewing before it stops; default two thirds of the lease. */
  OPERATOR_RENEW_DEADLINE_SECONDS: z.coerce.number().positive().max(300).optional(),
  OPERATOR_RESYNC_SECONDS: z.coerce.number().int().min(5).max(86_400).default(300),
  /** Renders at once, each on a thread of its own (a slow resource holds back no other while one is free). */
  OPERATOR_RENDER_THREADS: z.coerce.number().int().min(1).max(16).default(2),
  /** A render still running after this long is stopped (its thread terminated) and reported in that resource's status. */
  OPERATOR_RENDER_TIMEOUT_SECONDS: z.coerce.number().positive().max(3_600).default(60),
  /** /healthz fails while a reconcile has been running longer than this: the process is stuck. */
  OPERATOR_STALL_SECONDS: z.coerce.number().positive().max(86_400).default(300),
  LOG_LEVEL: z.enum(['trace', 'debug', 'info', 'warn', 'error']).default('info'),
  /** A kubeconfig file; without it the in-cluster ServiceAccount (or ~/.kube/config). */
  KUBECONFIG: z.string().min(1).optional(),
}).refine((c) => c.OPERATOR_RENEW_DEADLINE_SECONDS === undefined || c.OPERATOR_RENEW_DEADLINE_SECONDS < c.OPERATOR_LEASE_SECONDS, {
  path: ['OPERATOR_RENEW_DEADLINE_SECONDS'],
  message: 'must be shorter than OPERATOR_LEASE_SECONDS (a standby takes over once the lease has passed)',
}).refine((c) => worstReconcileSeconds(c) < c.OPERATOR_STALL_SECONDS, {
  path: ['OPERATOR_STALL_SECONDS'],
  message: `must exceed ceil(OPERATOR_WORKERS / OPERATOR_RENDER_THREADS) × OPERATOR_RENDER_TIMEOUT_SECONDS + ${APPLY_MARGIN_SECONDS} s: a reconcile that waits for a render thread behind every other worker and then renders until the timeout is not stuck, and /healthz failing for it would restart the operator in a loop`,
});

export type OperatorConfig = z.infer<typeof schema>;

export function loadConfig(env: NodeJS.ProcessEnv = process.env): OperatorConfig {
  const parsed = schema.safeParse(env);
  if (!parsed.success) {
    throw new Error(`invalid operator configuration:\n${parsed.error.issues.map((i) => `  ${i.path.join('.')}: ${i.message}`).join('\n')}`);
  }
  return Object.freeze(parsed.data);
}
