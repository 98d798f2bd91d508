// Inconsistent presets are refused before synthesis, each problem naming the field to change.
import { describe, expect, it } from 'vitest';
import { checkManifests, peakPods, PRESET_NAMES, presets, PresetValidationError, resolvePreset, synthManifests, type Manifest } from '../src/index.js';
import { cpuMillis, memoryBytes } from '../src/quantity.js';
import { ROLLOUT } from '../src/rollout.js';
import { redisMemoryFloor, rolloutDemand } from '../src/validate.js';

function issuesOf(fn: () => unknown): { field: string; message: string }[] {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(PresetValidationError);
    return [...(err as PresetValidationError).issues];
  }
  throw new Error('expected a PresetValidationError');
}

const rejects = (overrides: Record<string, unknown>, preset = 'premium') => issuesOf(() => resolvePreset(preset, overrides));

describe('validation refuses inconsistent overrides, naming the field', () => {
  it('workers × concurrency + web pools beyond PgBouncer max_client_conn', () => {
    const issues = rejects({ worker: { concurrency: 200 } });
    expect(issues).toContainEqual(expect.objectContaining({ field: 'pgbouncer.maxClientConn', message: expect.stringContaining('worker 3 × 200') }));
  });

  it('a monitoring extra label that Kubernetes would refuse', () => {
    expect(rejects({ monitoring: { extraLabels: { 'bad key!': 'x' } } })).toContainEqual(expect.objectContaining({ field: expect.stringMatching(/^monitoring\.extraLabels/) }));
    expect(rejects({ monitoring: { extraLabels: { release: 'a'.repeat(64) } } })).toContainEqual(expect.objectContaining({ field: 'monitoring.extraLabels.release' }));
    expect(() => resolvePreset('premium', { monitoring: { extraLabels: { release: 'kube-prometheus-stack', 'example.com/team': 'ops' } } })).not.toThrow();
  });

  it('media settings that would cap nothing or give links no one can open', () => {
    expect(rejects({ media: { channelConcurrency: 9 } })).toContainEqual(expect.objectContaining({ field: 'media.channelConcurrency', message: expect.stringContaining('cap nothing') }));
    expect(rejects({ media: { publicUrl: 'ftp://inbox.example.com' } })).toContainEqual(expect.objectContaining({ field: 'media.publicUrl' }));
    expect(rejects({ media: { urlTtlSeconds: 0 } })).toContainEqual(expect.objectContaining({ field: 'media.urlTtlSeconds' }));
    expect(() => resolvePreset('premium', { media: { publicUrl: 'https://inbox.example.com', channelConcurrency: 8 } })).not.toThrow();
  });

  it('PgBouncer pools beyond what Postgres max_connections leaves after the reserved ones', () => {
    const issues = rejects({ pgbouncer: { defaultPoolSize: 100, reservePoolSize: 50, maxDbConnections: 150 } });
    expect(issues).toContainEqual(expect.objectContaining({ field: 'postgres.maxConnections' }));
    expect(rejects({ postgres: { maxConnections: 150 } })).toContainEqual(expect.objectContaining({ field: 'postgres.maxConnections' }));
  });

  it('a reserve pool that could never open', () => {
    expect(rejects({ pgbouncer: { reservePoolSize: 60 } })).toContainEqual(expect.objectContaining({ field: 'pgbouncer.reservePoolSize' }));
  });

  it('a Redis memory limit below maxmemory + the replicas\' output buffers + 50% fork headroom (issue: OOM-killed at exactly 4 GB + 1 GB = 5 Gi)', () => {
    const limit = { field: 'redis.resources.limits.memory', message: expect.stringMatching(/below 7168Mi \(maxmemory 4gb \+ 1 × replica output buffer 1gb \+ 50%/) };
    expect(rejects({ redis: { resources: { limits: { memory: '5Gi' } } } })).toContainEqual(limit);
    expect(rejects({ redis: { resources: { limits: { memory: '7167Mi' } } } })).toContainEqual(limit);
    expect(() => resolvePreset('premium', { redis: { resources: { limits: { memory: '7Gi' } } } })).not.toThrow();
    expect(rejects({ redis: { maxmemory: '5gb' } })).toContainEqual(expect.objectContaining({ field: 'redis.resources.limits.memory' }));
    // Hard limit 0 is unlimited, which no memory limit holds.
    expect(rejects({ redis: { outputBuffers: { replica: '0 0 0', pubsub: '64mb 16mb 60' } } })).toContainEqual(expect.objectContaining({ field: 'redis.outputBuffers.replica', message: expect.stringContaining('unlimited') }));
    // Every preset as shipped holds its own floor.
    for (const p of PRESET_NAMES) expect(memoryBytes(presets[p].redis.resources.limits.memory), p).toBeGreaterThanOrEqual(redisMemoryFloor(presets[p]).bytes);
  });

  it('the fit counts the rollout surge and the DaemonSets (issue: standard at 7.45 of 7.5 cores, no room for the surge pod)', () => {
    // The standard preset as it was: web requesting 1 core, one surge pod of it on top.
    expect(rejects({ web: { resources: { requests: { cpu: '1' } } } }, 'standard')).toContainEqual(expect.objectContaining({ field: 'nodePool.allocatable.cpuCores', message: expect.stringContaining('rollout surge') }));
    const p = presets.standard;
    const demand = rolloutDemand(p);
    const steady = peakPods(p).filter((x) => x.component !== 'migrate').reduce((s, x) => s + x.count * cpuMillis(x.resources.requests.cpu), 0);
    expect(demand.cpu).toBe(steady + ROLLOUT.web.maxSurge * 500 + ROLLOUT.pgbouncer.maxSurge * 100 + 200);
    expect(rejects({ nodePool: { daemonSets: { cpu: '600m' } } }, 'standard')).toContainEqual(expect.objectContaining({ field: 'nodePool.allocatable.cpuCores' }));
    expect(rejects({ nodePool: { daemonSets: { memory: '1Gi' } } }, 'minimal')).toContainEqual(expect.objectContaining({ field: 'nodePool.allocatable.memoryGiB' }));
  });

  it('requests that do not fit the node pool at the HPA ceilings', () => {
    expect(rejects({ web: { maxReplicas: 8 } })).toContainEqual(expect.objectContaining({ field: 'nodePool.allocatable.cpuCores' }));
    expect(rejects({ nodePool: { allocatable: { memoryGiB: 20 } } })).toContainEqual(expect.objectContaining({ field: 'nodePool.allocatable.memoryGiB' }));
    expect(rejects({ postgres: { resources: { requests: { memory: '40Gi' }, limits: { memory: '40Gi' } } } })).toContainEqual(expect.objectContaining({ field: 'postgres.resources.requests.memory' }));
  });

  it('a request above its limit, replicas above the HPA ceiling', () => {
    expect(rejects({ worker: { resources: { requests: { cpu: '5' } } } })).toContainEqual(expect.objectContaining({ field: 'worker.resources.requests.cpu' }));
    expect(rejects({ web: { replicas: 5 } })).toContainEqual(expect.objectContaining({ field: 'web.replicas' }));
  });

  it('an eviction policy (or any field the preset does not have) is refused by name', () => {
    expect(rejects({ redis: { maxmemoryPolicy: 'allkeys-lru' } })).toContainEqual({ field: 'redis.maxmemoryPolicy', message: 'unknown field' });
  });

  it('a Redis without a replica, which Sentinel could not fail over and WAIT could never confirm', () => {
    expect(rejects({ redis: { replicas: 0 } })).toContainEqual(expect.objectContaining({ field: 'redis.replicas' }));
  });

  it('Sentinels that cannot agree on a failover', () => {
    expect(rejects({ redis: { sentinel: { replicas: 2, quorum: 1 } } })).toEqual(expect.arrayContaining([
      expect.objectContaining({ field: 'redis.sentinel.replicas' }),
      expect.objectContaining({ field: 'redis.sentinel.quorum' }),
    ]));
  });

  it('wrong types and units', () => {
    expect(rejects({ web: { resources: { limits: { memory: '3 gigs' } } } })).toContainEqual(expect.objectContaining({ field: 'web.resources.limits.memory' }));
    expect(rejects({ worker: { concurrency: 2.5 } })).toContainEqual(expect.objectContaining({ field: 'worker.concurrency' }));
    expect(rejects({ postgres: { settings: { max_connections: 900 } } })).toContainEqual(expect.objectContaining({ field: 'postgres.settings.max_connections' }));
    expect(rejects({ postgres: { mode: 'external' } })).toContainEqual(expect.objectContaining({ field: 'postgres.external' }));
  });

  it('an unknown preset names the choices', () => {
    expect(issuesOf(() => resolvePreset('huge'))).toEqual([{ field: 'preset', message: expect.stringContaining('minimal, standard, premium') }]);
  });

  it('every problem at once, not one per run', () => {
    const issues = rejects({ worker: { concurrency: 200 }, redis: { maxmemory: '5gb' }, web: { replicas: 5 } });
    expect(issues.map((i) => i.field)).toEqual(expect.arrayContaining(['pgbouncer.maxClientConn', 'redis.resources.limits.memory', 'web.replicas']));
    expect(() => synthManifests('premium', { overrides: { redis: { maxmemory: '5gb' } } })).toThrow(/redis\.resources\.limits\.memory/);
  });

  it('a consistent override passes and lands', () => {
    const p = resolvePreset('standard', { worker: { concurrency: 30 }, redis: { storage: '50Gi' } });
    expect(p.worker.concurrency).toBe(30);
    expect(p.redis.storage).toBe('50Gi');
    expect(p.redis.maxmemory).toBe('2gb');
  });
});

describe('synthesized containers are checked too', () => {
  it('a container without requests, limits or probes is named', () => {
    const bare: Manifest = {
      apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'x' },
      spec: { template: { spec: { containers: [{ name: 'c', resources: { limits: { cpu: '1' } } }] } } },
    };
    expect(checkManifests([bare]).map((i) => i.field)).toEqual([
      'Deployment/x.c.resources.requests.cpu', 'Deployment/x.c.resources.requests.memory', 'Deployment/x.c.resources.limits.memory',
      'Deployment/x.c.readinessProbe', 'Deployment/x.c.livenessProbe',
    ]);
  });
});
