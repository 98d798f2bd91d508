// The sizing documents' numbers must land in the fields Kubernetes and the servers read.
import { describe, expect, it } from 'vitest';
import { PRESET_NAMES, peakPods, presets, synthManifests, type Manifest } from '../src/index.js';
import { cpuMillis, GiB, memoryBytes } from '../src/quantity.js';
import { confMap, container, envOf, find, podSpec, type Json } from './helpers.js';

const byPreset = Object.fromEntries(PRESET_NAMES.map((p) => [p, synthManifests(p)])) as Record<string, Manifest[]>;

describe('premium lands the documents\' numbers', () => {
  const m = byPreset['premium']!;

  it('web: 2 × 3 CPU/3 GiB with requests 1.5/1.5 GiB (the rollout surge pod must fit), scaled by an HPA from 2', () => {
    const web = find(m, 'Deployment', 'wa-router-web');
    expect(container(web).resources).toEqual({ requests: { cpu: '1500m', memory: '1536Mi' }, limits: { cpu: '3', memory: '3Gi' } });
    expect(container(web).args).toEqual(['web']);
    const hpa = find(m, 'HorizontalPodAutoscaler', 'wa-router-web') as Json;
    expect(hpa.apiVersion).toBe('autoscaling/v2');
    expect(hpa.spec.minReplicas).toBe(2);
    expect(hpa.spec.maxReplicas).toBe(4);
    expect(hpa.spec.behavior.scaleDown.stabilizationWindowSeconds).toBeGreaterThanOrEqual(300);
    // The HPA owns the count: a pinned spec.replicas would undo its scale-ups on every apply.
    expect((web as Json).spec.replicas).toBeUndefined();
  });

  it('worker: 2 × 4 CPU/5 GiB with requests 2/3 GiB, concurrency 40 and a pool to match', () => {
    const worker = find(m, 'Deployment', 'wa-router-worker');
    expect(container(worker).resources).toEqual({ requests: { cpu: '2', memory: '3Gi' }, limits: { cpu: '4', memory: '5Gi' } });
    expect(container(worker).args).toEqual(['worker']);
    expect(envOf(worker)['WORKER_CONCURRENCY']).toBe('40');
    expect(envOf(worker)['DB_POOL_MAX']).toBe('40');
    expect((find(m, 'HorizontalPodAutoscaler', 'wa-router-worker') as Json).spec.minReplicas).toBe(2);
  });

  it('PgBouncer: 1 CPU/512 MiB, transaction mode, the documented pool', () => {
    const dep = find(m, 'Deployment', 'wa-router-pgbouncer');
    expect(container(dep).resources.limits).toEqual({ cpu: '1', memory: '512Mi' });
    const ini = confMap((find(m, 'ConfigMap', 'wa-router-pgbouncer') as Json).data['pgbouncer.ini'], '=');
    expect(Object.fromEntries(['pool_mode', 'max_client_conn', 'default_pool_size', 'reserve_pool_size', 'max_db_connections', 'server_idle_timeout'].map((k) => [k, ini.get(k)]))).toEqual({
      pool_mode: 'transaction', max_client_conn: '500', default_pool_size: '50', reserve_pool_size: '25', max_db_connections: '100', server_idle_timeout: '600',
    });
  });

  it('Postgres: 4 CPU/8 GiB with requests 2/4 GiB and the tuned postgresql.conf mounted', () => {
    const sts = find(m, 'StatefulSet', 'wa-router-postgres') as Json;
    expect(container(sts).resources).toEqual({ requests: { cpu: '2', memory: '4Gi' }, limits: { cpu: '4', memory: '8Gi' } });
    expect(container(sts).args).toContain('config_file=/etc/postgresql/postgresql.conf');
    expect(sts.spec.volumeClaimTemplates[0].spec.resources.requests.storage).toBe('200Gi');
    const conf = confMap((find(m, 'ConfigMap', 'wa-router-postgres') as Json).data['postgresql.conf'], '=');
    expect(conf.get('shared_buffers')).toBe('2GB');
    expect(conf.get('max_connections')).toBe('250');
    expect(container(sts).readinessProbe.exec.command.join(' ')).toContain('pg_isready');
  });

  it('Redis: maxmemory 4 GB never evicting, 3 CPU/7 GiB (fork headroom), io-threads 4, a replica and 3 Sentinels with quorum 2', () => {
    const redis = find(m, 'StatefulSet', 'wa-router-redis') as Json;
    expect(redis.spec.replicas).toBe(2);
    expect(container(redis).resources).toEqual({ requests: { cpu: '1500m', memory: '3Gi' }, limits: { cpu: '3', memory: '7Gi' } });
    expect(redis.spec.volumeClaimTemplates[0].metadata.name).toBe('data');
    const data = (find(m, 'ConfigMap', 'wa-router-redis') as Json).data;
    const conf = confMap(data['redis.conf'], ' ');
    expect(conf.get('maxmemory')).toBe('4gb');
    expect(conf.get('maxmemory-policy')).toBe('noeviction');
    expect(conf.get('appendonly')).toBe('yes');
    expect(conf.get('appendfsync')).toBe('everysec');
    expect(conf.get('io-threads')).toBe('4');
    expect(data['redis.conf']).toMatch(/^client-output-buffer-limit replica 1gb 256mb 60$/m);
    expect(data['redis.conf']).toMatch(/^client-output-buffer-limit pubsub 128mb 32mb 60$/m);
    expect(data['sentinel.conf']).toMatch(/^sentinel monitor wa-router __MASTER_HOST__ 6379 2$/m);
    expect((find(m, 'StatefulSet', 'wa-router-sentinel') as Json).spec.replicas).toBe(3);
  });

  it('the documents\' limits add up to the 22 cores and 29.5 GB allotted (one Redis at the documents\' 5 GiB, one PgBouncer)', () => {
    const p = presets.premium;
    const documentedRedis = { ...p.redis.resources, limits: { ...p.redis.resources.limits, memory: '5Gi' } };
    const parts = [
      [p.web.resources, p.web.replicas], [p.worker.resources, p.worker.replicas], [p.postgres.resources, 1], [documentedRedis, 1], [p.pgbouncer.resources, 1],
    ] as const;
    expect(parts.reduce((s, [r, n]) => s + cpuMillis(r.limits.cpu) * n, 0)).toBe(22_000);
    expect(parts.reduce((s, [r, n]) => s + memoryBytes(r.limits.memory) * n, 0) / GiB).toBe(29.5);
  });
});

describe('standard and minimal land theirs', () => {
  it('standard: web 2 CPU/2 GiB (0.5/1), worker 3/3 (1.5/2) × 25, Redis 2 GB in 2/3.5 GiB (0.5/1), Postgres 2/3 (1/2) with max_connections 200', () => {
    const m = byPreset['standard']!;
    expect(container(find(m, 'Deployment', 'wa-router-web')).resources).toEqual({ requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '2', memory: '2Gi' } });
    const worker = find(m, 'Deployment', 'wa-router-worker');
    expect(container(worker).resources).toEqual({ requests: { cpu: '1500m', memory: '2Gi' }, limits: { cpu: '3', memory: '3Gi' } });
    expect(envOf(worker)['WORKER_CONCURRENCY']).toBe('25');
    expect(container(find(m, 'StatefulSet', 'wa-router-redis')).resources).toEqual({ requests: { cpu: '500m', memory: '1Gi' }, limits: { cpu: '2', memory: '3584Mi' } });
    expect(container(find(m, 'StatefulSet', 'wa-router-postgres')).resources).toEqual({ requests: { cpu: '1', memory: '2Gi' }, limits: { cpu: '2', memory: '3Gi' } });
    const conf = confMap((find(m, 'ConfigMap', 'wa-router-postgres') as Json).data['postgresql.conf'], '=');
    expect(Object.fromEntries(['max_connections', 'shared_buffers', 'effective_cache_size', 'maintenance_work_mem', 'work_mem', 'wal_buffers', 'min_wal_size', 'max_wal_size', 'checkpoint_completion_target', 'random_page_cost', 'effective_io_concurrency'].map((k) => [k, conf.get(k)]))).toEqual({
      max_connections: '200', shared_buffers: '512MB', effective_cache_size: '2GB', maintenance_work_mem: '128MB', work_mem: '8MB', wal_buffers: '16MB',
      min_wal_size: '1GB', max_wal_size: '4GB', checkpoint_completion_target: '0.9', random_page_cost: '1.1', effective_io_concurrency: '200',
    });
    expect(confMap((find(m, 'ConfigMap', 'wa-router-redis') as Json).data['redis.conf'], ' ').get('maxmemory')).toBe('2gb');
  });

  it('minimal: web 1.5 CPU/1.5 GiB, worker 2/2 × 15, Redis 1 GB in 1 CPU/1.75 GiB', () => {
    const m = byPreset['minimal']!;
    expect(container(find(m, 'Deployment', 'wa-router-web')).resources.limits).toEqual({ cpu: '1500m', memory: '1536Mi' });
    const worker = find(m, 'Deployment', 'wa-router-worker');
    expect(container(worker).resources.limits).toEqual({ cpu: '2', memory: '2Gi' });
    expect(envOf(worker)['WORKER_CONCURRENCY']).toBe('15');
    expect(container(find(m, 'StatefulSet', 'wa-router-redis')).resources.limits).toEqual({ cpu: '1', memory: '1792Mi' });
    expect(confMap((find(m, 'ConfigMap', 'wa-router-redis') as Json).data['redis.conf'], ' ').get('maxmemory')).toBe('1gb');
  });
});

describe.each(PRESET_NAMES)('%s: the topology a production cluster expects', (name) => {
  const m = byPreset[name]!;

  it('every pod is non-root with a read-only root filesystem, dropping all capabilities (restricted)', () => {
    for (const obj of m.filter((x) => (x as Json).spec?.template?.spec)) {
      const spec = podSpec(obj);
      expect(spec.securityContext.runAsNonRoot, `${obj.kind}/${obj.metadata.name}`).toBe(true);
      expect(spec.securityContext.seccompProfile.type).toBe('RuntimeDefault');
      for (const c of spec.containers) {
        expect(c.securityContext, `${obj.metadata.name}/${c.name}`).toEqual({ allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ['ALL'] } });
      }
    }
    expect((find(m, 'Namespace', 'wa-router') as Json).metadata.labels['pod-security.kubernetes.io/enforce']).toBe('restricted');
  });

  it('web and worker run one image with their role, probes on /healthz and /readyz, graceful shutdown', () => {
    for (const role of ['web', 'worker']) {
      const dep = find(m, 'Deployment', `wa-router-${role}`);
      const c = container(dep);
      expect(c.args).toEqual([role]);
      expect(c.readinessProbe.httpGet.path).toBe('/readyz');
      expect(c.livenessProbe.httpGet.path).toBe('/healthz');
      expect(c.envFrom.map((e: Json) => e.configMapRef?.name ?? e.secretRef?.name)).toEqual(['wa-router-config', 'wa-router-app']);
      expect(podSpec(dep).terminationGracePeriodSeconds).toBeGreaterThan(30);
      expect(c.lifecycle.preStop).toBeDefined();
      expect((dep as Json).spec.template.metadata.annotations['prometheus.io/scrape']).toBe('true');
    }
  });

  it('the service reaches Redis through the Sentinels and Postgres through PgBouncer, acking with a replica', () => {
    const cfg = (find(m, 'ConfigMap', 'wa-router-config') as Json).data;
    expect(cfg.REDIS_SENTINELS.split(',')).toHaveLength(3);
    expect(cfg.REDIS_SENTINELS).toMatch(/^wa-router-sentinel-0\.wa-router-sentinel-headless\.wa-router\.svc\.cluster\.local:26379,/);
    expect(cfg.ACK_DURABILITY).toBe('replicated');
    expect(envOf(find(m, 'Deployment', 'wa-router-web'))['DATABASE_URL']).toBe('postgres://$(DB_USER):$(DB_PASSWORD)@wa-router-pgbouncer:6432/wa_router');
  });

  it('no secret values: manifests only reference Secrets the operator creates', () => {
    expect(m.filter((x) => x.kind === 'Secret')).toEqual([]);
    const refs = new Set(JSON.stringify(m).match(/"(secretName|name)":"wa-router-(app|postgres|redis|pgbouncer)"/g));
    expect(refs.size).toBeGreaterThan(0);
  });

  it('ingress is denied by default and only our pods reach Redis, PgBouncer and Postgres', () => {
    const deny = find(m, 'NetworkPolicy', 'wa-router-default-deny-ingress') as Json;
    expect(deny.spec).toEqual({ podSelector: {}, policyTypes: ['Ingress'] });
    const from = (n: string) => ((find(m, 'NetworkPolicy', n) as Json).spec.ingress[0].from as Json[]).map((f) => f.podSelector.matchLabels['app.kubernetes.io/component']);
    expect(from('wa-router-pgbouncer')).toEqual(['web', 'worker', 'migrate']);
    expect(from('wa-router-postgres')).toEqual(['pgbouncer']);
    expect(from('wa-router-redis')).toEqual(expect.arrayContaining(['web', 'worker', 'sentinel']));
  });

  it('a migration Job named after the image and config; no PDB on the one-node pool, where any budget would hang `kubectl drain`', () => {
    const job = m.find((x) => x.kind === 'Job') as Json;
    expect(job.metadata.name).toMatch(/^wa-router-migrate-[0-9a-f]{8}$/);
    expect(job.spec.template.spec.containers[0].args).toEqual(['migrate']);
    expect(presets[name].nodePool.nodes).toBe(1);
    expect(m.filter((x) => x.kind === 'PodDisruptionBudget')).toEqual([]);
  });

  it('at its HPA ceilings the preset fits its node pool by requests, and would not fit one 25% smaller', () => {
    const p = presets[name];
    const sum = (key: 'cpu' | 'memory') => peakPods(p).reduce((s, pod) => s + pod.count * (key === 'cpu' ? cpuMillis(pod.resources.requests.cpu) / 1000 : memoryBytes(pod.resources.requests.memory) / GiB), 0);
    const cpu = sum('cpu');
    const mem = sum('memory');
    expect(cpu).toBeLessThanOrEqual(p.nodePool.allocatable.cpuCores);
    expect(mem).toBeLessThanOrEqual(p.nodePool.allocatable.memoryGiB);
    expect(cpu > p.nodePool.allocatable.cpuCores * 0.75 || mem > p.nodePool.allocatable.memoryGiB * 0.75).toBe(true);
  });
});

describe('options', () => {
  it('namespace and image go where they belong; atPeak pins every tier at its ceiling', () => {
    const m = synthManifests('premium', { namespace: 'wa', image: 'registry.example/wa-router:1.2.3', atPeak: true });
    expect(m.filter((x) => x.kind !== 'Namespace').every((x) => x.metadata.namespace === 'wa')).toBe(true);
    expect(find(m, 'Namespace', 'wa').metadata.namespace).toBeUndefined();
    const web = find(m, 'Deployment', 'wa-router-web') as Json;
    expect(container(web).image).toBe('registry.example/wa-router:1.2.3');
    expect(web.spec.replicas).toBe(4);
    expect((find(m, 'Deployment', 'wa-router-worker') as Json).spec.replicas).toBe(3);
    expect((find(m, 'ConfigMap', 'wa-router-config') as Json).data.REDIS_SENTINELS).toContain('.wa.svc.cluster.local:26379');
  });

  it('KEDA replaces the worker HPA with a ScaledObject on the inbound backlog and CPU', () => {
    const m = synthManifests('premium', { overrides: { worker: { keda: { enabled: true } } } });
    expect(m.find((x) => x.kind === 'HorizontalPodAutoscaler' && x.metadata.name === 'wa-router-worker')).toBeUndefined();
    const so = find(m, 'ScaledObject', 'wa-router-worker') as Json;
    expect(so.apiVersion).toBe('keda.sh/v1alpha1');
    expect(so.spec.triggers.map((t: Json) => t.type)).toEqual(['redis-sentinel', 'cpu']);
    expect(so.spec.triggers[0].metadata.listName).toBe('wa:inbound:wait');
    expect(so.spec.triggers[0].metadata.listLength).toBe('5000');
    expect(find(m, 'TriggerAuthentication', 'wa-router-worker')).toBeDefined();
  });

  it('an external Postgres: no StatefulSet, PgBouncer points at it', () => {
    const m = synthManifests('standard', { overrides: { postgres: { mode: 'external', external: { host: 'db.internal', port: 5433, database: 'crm' } } } });
    expect(m.some((x) => x.metadata.name.startsWith('wa-router-postgres') && x.kind === 'StatefulSet')).toBe(false);
    const ini = (find(m, 'ConfigMap', 'wa-router-pgbouncer') as Json).data['pgbouncer.ini'];
    expect(ini).toMatch(/^crm = host=db\.internal port=5433 dbname=crm /m);
    expect(envOf(find(m, 'Deployment', 'wa-router-web'))['DATABASE_URL']).toMatch(/\/crm$/);
  });

  it('a streaming standby clones the primary and is allowed to reach it', () => {
    const m = synthManifests('premium', { overrides: { postgres: { streamingReplica: true }, nodePool: { nodes: 2 } } });
    const replica = find(m, 'StatefulSet', 'wa-router-postgres-replica');
    expect(container(replica).command).toEqual(['sh', '/etc/postgresql/start-replica.sh']);
    const np = find(m, 'NetworkPolicy', 'wa-router-postgres') as Json;
    expect(np.spec.ingress[0].from.map((f: Json) => f.podSelector.matchLabels['app.kubernetes.io/component'])).toEqual(['pgbouncer', 'postgres-replica']);
  });
});

describe('day 2: rollouts, config changes, migrations, drains', () => {
  const hashOf = (m: Manifest[], kind: string, name: string) => (find(m, kind, name) as Json).spec.template.metadata.annotations['wa-router.io/config-hash'] as string;
  const base = synthManifests('standard');

  it('a config change changes the pod template of exactly the pods that read it (issue: nothing rolled, files copied once)', () => {
    const targets = [['Deployment', 'wa-router-web'], ['Deployment', 'wa-router-worker'], ['Deployment', 'wa-router-pgbouncer'], ['StatefulSet', 'wa-router-redis'], ['StatefulSet', 'wa-router-sentinel'], ['StatefulSet', 'wa-router-postgres']] as const;
    for (const [kind, name] of targets) expect(hashOf(base, kind, name), name).toMatch(/^[0-9a-f]{16}$/);
    const changed = (overrides: Record<string, unknown>) => {
      const m = synthManifests('standard', { overrides });
      return targets.filter(([kind, name]) => hashOf(m, kind, name) !== hashOf(base, kind, name)).map(([, name]) => name);
    };
    expect(changed({ pgbouncer: { defaultPoolSize: 25 } })).toEqual(['wa-router-pgbouncer']);
    expect(changed({ redis: { ioThreads: 3 } })).toEqual(['wa-router-redis']);
    expect(changed({ redis: { sentinel: { downAfterMs: 6_000 } } })).toEqual(['wa-router-sentinel']);
    expect(changed({ postgres: { settings: { work_mem: '16MB' } } })).toEqual(['wa-router-postgres']);
    expect(changed({ worker: { concurrency: 20 } })).toEqual(['wa-router-worker']);
    expect(changed({}), 'same preset, same hashes').toEqual([]);
  });

  it('no subPath mount anywhere: a ConfigMap update reaches the mounted directory', () => {
    expect(JSON.stringify(base)).not.toContain('subPath');
    const bouncer = container(find(base, 'Deployment', 'wa-router-pgbouncer'));
    expect(bouncer.command).toEqual(['pgbouncer', '/etc/pgbouncer/config/pgbouncer.ini']);
    expect(bouncer.volumeMounts).toContainEqual({ name: 'config', mountPath: '/etc/pgbouncer/config', readOnly: true });
  });

  it('the migration Job name changes with the image digest and the config, not otherwise (issue: one name for every :latest build)', () => {
    const jobName = (m: Manifest[]) => m.find((x) => x.kind === 'Job')!.metadata.name;
    const a = synthManifests('standard', { image: 'registry.example/wa@sha256:' + 'a'.repeat(64) });
    const b = synthManifests('standard', { image: 'registry.example/wa@sha256:' + 'b'.repeat(64) });
    expect(jobName(a)).not.toBe(jobName(b));
    expect(jobName(a)).toBe(jobName(synthManifests('standard', { image: 'registry.example/wa@sha256:' + 'a'.repeat(64) })));
    expect(jobName(synthManifests('standard', { overrides: { worker: { concurrency: 20 } } }))).toBe(jobName(base));
    expect(jobName(synthManifests('standard', { namespace: 'other' }))).not.toBe(jobName(base));
  });

  it('our image is pulled again on every pod start when it is a tag, never when it is a digest', () => {
    const policies = (m: Manifest[]) => m.filter((x) => ['Deployment', 'Job'].includes(x.kind) && x.metadata.name !== 'wa-router-pgbouncer')
      .flatMap((x) => { const spec = podSpec(x); return [...(spec.initContainers ?? []), ...spec.containers]; })
      .map((c: { image: string; imagePullPolicy?: string }) => c.imagePullPolicy);
    const tagged = policies(synthManifests('standard', { image: 'registry.example/wa:1.0' }));
    expect(tagged.length).toBeGreaterThanOrEqual(5);
    expect(new Set(tagged)).toEqual(new Set(['Always']));
    expect(new Set(policies(synthManifests('standard', { image: 'registry.example/wa@sha256:' + 'a'.repeat(64) })))).toEqual(new Set(['IfNotPresent']));
  });

  it('web and worker wait in an init container until the schema holds their migrations (issue: new code met the old schema)', () => {
    for (const role of ['web', 'worker']) {
      const spec = podSpec(find(base, 'Deployment', `wa-router-${role}`));
      expect(spec.initContainers).toHaveLength(1);
      const init = spec.initContainers[0];
      expect(init.args).toEqual(['migrate', 'check']);
      expect(init.image).toBe(container(find(base, 'Deployment', `wa-router-${role}`)).image);
      expect(init.env.find((e: Json) => e.name === 'DATABASE_URL').value).toContain('@wa-router-pgbouncer:6432/');
      expect(init.resources.requests).toEqual({ cpu: '100m', memory: '256Mi' });
    }
  });

  it('rollouts: web surges one pod, the worker rolls in place (issue: 25% surge that no longer fit)', () => {
    const strategy = (name: string) => (find(base, 'Deployment', name) as Json).spec.strategy.rollingUpdate;
    expect(strategy('wa-router-web')).toEqual({ maxSurge: 1, maxUnavailable: 0 });
    expect(strategy('wa-router-worker')).toEqual({ maxSurge: 0, maxUnavailable: 1 });
    expect(strategy('wa-router-pgbouncer')).toEqual({ maxSurge: 1, maxUnavailable: 0 });
  });

  it('PgBouncer stops with SIGINT (wait for servers, not clients) and waits for the exit within its grace period (issue: SIGTERM waited for clients, then SIGKILL)', () => {
    const dep = find(base, 'Deployment', 'wa-router-pgbouncer');
    const hook = container(dep).lifecycle.preStop.exec.command.join(' ');
    expect(hook).toMatch(/kill -INT 1/);
    expect(hook).toMatch(/while kill -0 1/);
    expect(hook).not.toMatch(/-TERM/);
    expect(podSpec(dep).terminationGracePeriodSeconds).toBeGreaterThanOrEqual(5 + 60);
  });

  it('on a pool of several nodes every long-running component has a budget a drain can honour', () => {
    const m = synthManifests('standard', { overrides: { nodePool: { nodes: 2 } } });
    const pdbs = m.filter((x) => x.kind === 'PodDisruptionBudget') as Json[];
    expect(pdbs.map((x) => x.metadata.name).sort()).toEqual(['wa-router-pgbouncer', 'wa-router-postgres', 'wa-router-redis', 'wa-router-sentinel', 'wa-router-web', 'wa-router-worker']);
    for (const pdb of pdbs) expect(pdb.spec.unhealthyPodEvictionPolicy).toBe('AlwaysAllow');
    expect(pdbs.find((x) => x.metadata.name === 'wa-router-sentinel').spec.minAvailable).toBe(2);
  });

  it('replicated acks fall back to the master alone while no replica is connected (issue: 503 for every webhook during a replica restart)', () => {
    const cfg = (find(base, 'ConfigMap', 'wa-router-config') as Json).data;
    expect(cfg.ACK_DURABILITY).toBe('replicated');
    expect(cfg.ACK_REPLICA_FALLBACK).toBe('local');
  });

  it('named prepared statements are on exactly where PgBouncer tracks them', () => {
    const cfg = (find(base, 'ConfigMap', 'wa-router-config') as Json).data;
    expect(cfg.DATABASE_PREPARED_STATEMENTS).toBe('true');
    const ini = (find(base, 'ConfigMap', 'wa-router-pgbouncer') as Json).data['pgbouncer.ini'] as string;
    expect(Number(/^max_prepared_statements = (\d+)$/m.exec(ini)?.[1])).toBeGreaterThan(0);
  });
});

describe('media settings', () => {
  it('reach the pods: the external bucket, its keys and link key by Secret reference, links and the per-channel cap', () => {
    const m = synthManifests('standard', { overrides: { media: { bucket: 'acme-media', endpoint: 'https://s3.acme.example', forcePathStyle: true, publicUrl: 'https://inbox.acme.example', channelConcurrency: 2, urlTtlSeconds: 900, s3Redirect: false } } });
    expect((find(m, 'ConfigMap', 'wa-router-config') as Json).data).toMatchObject({
      MEDIA_STORE: 's3', S3_BUCKET: 'acme-media', S3_ENDPOINT: 'https://s3.acme.example', S3_FORCE_PATH_STYLE: 'true',
      PUBLIC_URL: 'https://inbox.acme.example', MEDIA_CHANNEL_CONCURRENCY: '2', MEDIA_URL_TTL_SECONDS: '900', MEDIA_S3_REDIRECT: 'false',
    });
    for (const name of ['wa-router-web', 'wa-router-worker']) {
      const refs = Object.fromEntries((container(find(m, 'Deployment', name)).env as Json[]).filter((e) => e.valueFrom?.secretKeyRef).map((e) => [e.name, e.valueFrom.secretKeyRef]));
      expect(refs).toMatchObject({
        S3_ACCESS_KEY_ID: { name: 'wa-router-media', key: 'accessKeyId', optional: true },
        S3_SECRET_ACCESS_KEY: { name: 'wa-router-media', key: 'secretAccessKey', optional: true },
        MEDIA_URL_SECRET: { name: 'wa-router-media', key: 'urlSecret', optional: true },
      });
    }
    // No object store of ours, and without a public origin the links stay paths.
    expect(m.filter((x) => /minio|seaweed|s3/i.test(x.metadata.name))).toEqual([]);
    expect((find(byPreset['standard']!, 'ConfigMap', 'wa-router-config') as Json).data.PUBLIC_URL).toBeUndefined();
  });
});
