// Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews the
// Lease every `retryMs`; a candidate takes it over once the Lease has not changed for
// `leaseDurationSeconds` by its own monotonic clock (never by comparing the holder's renewTime with
// its wall clock: nodes' clocks differ). A holder that could not renew within `renewDeadlineMs`
// stops leading, before any candidate can see the Lease expire. Writes carry the resourceVersion
// read, so two candidates cannot both win a round.
import { performance } from 'node:perf_hooks';
import type { Logger } from 'pino';
import type { KubeApi } from './kube-api.js';

export interface LeaderElectionOptions {
  readonly namespace: string;
  readonly name: string;
  readonly identity: string;
  /** @default 15 */
  readonly leaseDurationSeconds?: number;
  /** How often the holder renews and a candidate retries. @default 2_000 */
  readonly retryMs?: number;
  /** How long a holder keeps leading without a renewal; shorter than the lease. @default 2/3 of the lease */
  readonly renewDeadlineMs?: number;
  readonly onStartedLeading: () => void;
  /** Called once when a held Lease could not be renewed in time: the process must stop working. */
  readonly onStoppedLeading: () => void;
}

interface Lease {
  apiVersion: 'coordination.k8s.io/v1';
  kind: 'Lease';
  metadata: { name: string; namespace: string; resourceVersion?: string };
  spec: { holderIdentity?: string; leaseDurationSeconds?: number; acquireTime?: string; renewTime?: string; leaseTransitions?: number };
}

/** MicroTime: RFC 3339 with six fractional digits. */
const microTime = (d = new Date()) => d.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');

export class LeaderElector {
  private timer: NodeJS.Timeout | undefined;
  private leading = false;
  private lastRenew = 0;
  private stopped = false;
  /** The Lease as last seen (holder, renewTime, resourceVersion), and when this process saw it change. */
  private observed = '';
  private observedAt = 0;
  private readonly duration: number;
  private readonly retryMs: number;
  private readonly renewDeadlineMs: number;

  constructor(
    private readonly api: KubeApi,
    private readonly log: Logger,
    private readonly opts: LeaderElectionOptions,
  ) {
    this.duration = opts.leaseDurationSeconds ?? 15;
    this.retryMs = opts.retryMs ?? 2_000;
    this.renewDeadlineMs = opts.renewDeadlineMs ?? (this.duration * 1000 * 2) / 3;
    if (this.renewDeadlineMs >= this.duration * 1000) throw new Error('the renew deadline must be shorter than the lease');
  }

  get isLeader(): boolean {
    return this.leading;
  }

  /**
   * Whether the Lease is surely still ours: renewed within the renew deadline by this process's
   * monotonic clock, which runs on while the process is paused. A leader woken from a pause longer
   * than that (SIGSTOP, a frozen VM) learns it here, before its next write, not on its next round.
   */
  get holdsLease(): boolean {
    return this.leading && performance.now() - this.lastRenew < this.renewDeadlineMs;
  }

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      // A round that hangs must not keep a leader leading past its deadline.
      const deadline = this.leading ? Math.max(0, this.lastRenew + this.renewDeadlineMs - performance.now()) : this.retryMs * 5;
      let timeout: NodeJS.Timeout | undefined;
      try {
        await Promise.race([
          this.round(),
          new Promise((_, reject) => { timeout = setTimeout(() => reject(new Error('round timed out')), deadline); }),
        ]);
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'leader election round failed');
      } finally {
        clearTimeout(timeout);
      }
      if (this.leading && performance.now() - this.lastRenew >= this.renewDeadlineMs) {
        this.leading = false;
        this.log.error('could not renew the leader Lease in time');
        this.opts.onStoppedLeading();
        return;
      }
      if (!this.stopped) this.timer = setTimeout(() => void tick(), this.retryMs);
    };
    void tick();
  }

  private async round(): Promise<void> {
    const { namespace, name, identity } = this.opts;
    const path = `/apis/coordination.k8s.io/v1/namespaces/${namespace}/leases`;
    // A renewal counts from before it was sent: the standbys saw it no earlier than that.
    const started = performance.now();
    const got = await this.api.request<Lease>('GET', `${path}/${name}`);
    const now = new Date();
    if (got.status === 404) {
      const lease: Lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: { holderIdentity: identity, leaseDurationSeconds: this.duration, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 } };
      const r = await this.api.request('POST', path, lease);
      if (r.status === 201) this.acquired(started);
      return;
    }
    if (got.status !== 200) throw new Error(`GET lease: ${got.status}`);
    const lease = got.body;
    const seen = JSON.stringify([lease.spec.holderIdentity, lease.spec.renewTime, lease.metadata.resourceVersion]);
    if (seen !== this.observed) {
      this.observed = seen;
      this.observedAt = performance.now();
    }
    const held = lease.spec.holderIdentity === identity;
    const expired = !lease.spec.holderIdentity || this.observedAt + (lease.spec.leaseDurationSeconds ?? this.duration) * 1000 < performance.now();
    if (!held && !expired) return;
    const spec = held
      ? { ...lease.spec, renewTime: microTime(now), leaseDurationSeconds: this.duration }
      : { holderIdentity: identity, leaseDurationSeconds: this.duration, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 };
    const r = await this.api.request('PUT', `${path}/${name}`, { ...lease, spec });
    // A Lease already in our name is ours too: a restarted container keeps its pod's name.
    if (r.status === 200) this.acquired(started);
  }

  private acquired(at: number): void {
    this.lastRenew = at;
    if (this.leading) return;
    this.leading = true;
    this.log.info({ identity: this.opts.identity }, 'became the leader');
    this.opts.onStartedLeading();
  }

  /** Stops electing; a leader gives the Lease up so a standby takes over at once. */
  async stop(): Promise<void> {
    this.stopped = true;
    clearTimeout(this.timer);
    if (!this.leading) return;
    this.leading = false;
    const path = `/apis/coordination.k8s.io/v1/namespaces/${this.opts.namespace}/leases/${this.opts.name}`;
    const got = await this.api.request<Lease>('GET', path);
    if (got.status === 200 && got.body.spec.holderIdentity === this.opts.identity) {
      await this.api.request('PUT', path, { ...got.body, spec: { ...got.body.spec, holderIdentity: '', leaseDurationSeconds: 1 } });
    }
  }
}
