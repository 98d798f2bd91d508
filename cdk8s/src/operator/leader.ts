// Leader election on a coordination.k8s.io Lease, as client-go does it: the holder renews the
// Lease every `retryMs`; a candidate takes it over once `renewTime + leaseDurationSeconds` has
// passed. Writes carry the resourceVersion read, so two candidates cannot both win a round.
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
  private readonly duration: number;
  private readonly retryMs: number;

  constructor(
    private readonly api: KubeApi,
    private readonly log: Logger,
    private readonly opts: LeaderElectionOptions,
  ) {
    this.duration = opts.leaseDurationSeconds ?? 15;
    this.retryMs = opts.retryMs ?? 2_000;
  }

  get isLeader(): boolean {
    return this.leading;
  }

  start(): void {
    const tick = async () => {
      if (this.stopped) return;
      try {
        await this.round();
      } catch (err) {
        this.log.warn({ err: (err as Error).message }, 'leader election round failed');
      }
      if (this.leading && Date.now() - this.lastRenew > this.duration * 1000) {
        this.leading = false;
        this.log.error('lost the leader Lease');
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
    const got = await this.api.request<Lease>('GET', `${path}/${name}`);
    const now = new Date();
    if (got.status === 404) {
      const lease: Lease = { apiVersion: 'coordination.k8s.io/v1', kind: 'Lease', metadata: { name, namespace }, spec: { holderIdentity: identity, leaseDurationSeconds: this.duration, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: 0 } };
      const r = await this.api.request('POST', path, lease);
      if (r.status === 201) this.acquired();
      return;
    }
    if (got.status !== 200) throw new Error(`GET lease: ${got.status}`);
    const lease = got.body;
    const held = lease.spec.holderIdentity === identity;
    const renewed = lease.spec.renewTime ? Date.parse(lease.spec.renewTime) : 0;
    const expired = !lease.spec.holderIdentity || renewed + (lease.spec.leaseDurationSeconds ?? this.duration) * 1000 < now.getTime();
    if (!held && !expired) return;
    const spec = held
      ? { ...lease.spec, renewTime: microTime(now), leaseDurationSeconds: this.duration }
      : { holderIdentity: identity, leaseDurationSeconds: this.duration, acquireTime: microTime(now), renewTime: microTime(now), leaseTransitions: (lease.spec.leaseTransitions ?? 0) + 1 };
    const r = await this.api.request('PUT', `${path}/${name}`, { ...lease, spec });
    // A Lease already in our name is ours too: a restarted container keeps its pod's name.
    if (r.status === 200) this.acquired();
  }

  private acquired(): void {
    this.lastRenew = Date.now();
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
