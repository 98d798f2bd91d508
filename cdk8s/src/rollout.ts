// How each Deployment rolls, shared by the constructs (their strategy) and the fit check (the
// surge pods a rollout adds at the HPA ceilings must fit the pool, or the rollout stalls).

export interface RollingUpdate {
  /** Extra pods a rollout may add above the replica count. */
  readonly maxSurge: number;
  /** Pods a rollout may take away below it. */
  readonly maxUnavailable: number;
}

export const ROLLOUT = {
  // Webhooks must be answered throughout: a new pod is ready before an old one stops.
  web: { maxSurge: 1, maxUnavailable: 0 },
  // A worker restart only delays jobs (they wait in Redis), so it rolls in place and a rollout at
  // the ceiling needs no room for a second worker.
  worker: { maxSurge: 0, maxUnavailable: 1 },
  // Clients reconnect to the other pod; with one pod the new one must be up first.
  pgbouncer: { maxSurge: 1, maxUnavailable: 0 },
} as const satisfies Record<string, RollingUpdate>;
