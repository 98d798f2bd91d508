// The shipped alert rules under promtool: every preset's rule file is valid, and every alert fires
// on the series that mean trouble and stays silent on healthy ones (promtool test rules feeds
// series minute by minute and evaluates the rules as Prometheus would, `for:` included).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { presets, PRESET_NAMES, type Preset } from '../../../cdk8s/src/presets.js';
import { alertGroups } from '../../../cdk8s/src/monitoring/rules.js';
import { monitoringFilesOf, prometheusBinaries, run } from './tools.js';

const NS = 'wa-router';
let promtool = '';

beforeAll(() => {
  promtool = prometheusBinaries().promtool;
}, 30 * 60_000);

interface Case {
  /** What the series show, for the failure message. */
  readonly name: string;
  readonly series: Record<string, string>;
  readonly alert: string;
  readonly at: string;
  /** Labels of each expected alert besides alertname and severity; empty: must stay silent. */
  readonly fires: Record<string, string>[];
  /** Trouble shown for less than the alert's `for:` at `at`: silent only thanks to `for:`. */
  readonly shorterThanFor?: true;
}

const s = (metric: string, labels: Record<string, string> = {}) =>
  `${metric}{${Object.entries({ namespace: NS, ...labels }).map(([k, v]) => `${k}="${v}"`).join(',')}}`;

/** Every alert, firing and silent, with values on either side of the preset's thresholds. */
function cases(p: Preset): Case[] {
  const target = p.targets.webhookP99Ms / 1000;
  const backlog = p.monitoring.inboundBacklogSeconds;
  const stall = p.monitoring.historyStallMinutes;
  const area = p.monitoring.areaBacklogSeconds;
  const webhook = (accepted: number, unavailable: number) => ({
    [s('wa_router_webhook_requests_total', { outcome: 'accepted' })]: `0+${accepted}x30`,
    [s('wa_router_webhook_requests_total', { outcome: 'unavailable' })]: `0+${unavailable}x30`,
  });
  // All observations in one bucket: the p99 lands just under that bucket's upper bound.
  const latency = (le: number) => ({
    [s('wa_router_webhook_duration_seconds_bucket', { outcome: 'accepted', le: String(le / 2) })]: '0x30',
    [s('wa_router_webhook_duration_seconds_bucket', { outcome: 'accepted', le: String(le) })]: '0+100x30',
    [s('wa_router_webhook_duration_seconds_bucket', { outcome: 'accepted', le: '+Inf' })]: '0+100x30',
  });
  const ns = { namespace: NS };
  return [
    { name: '10% answered 503', alert: 'WaRouterWebhook5xxRatio', at: '10m', series: webhook(90, 10), fires: [ns] },
    { name: '1% answered 503', alert: 'WaRouterWebhook5xxRatio', at: '10m', series: webhook(99, 1), fires: [] },
    { name: 'p99 at twice the target', alert: 'WaRouterWebhookLatencyHigh', at: '20m', series: latency(target * 2), fires: [ns] },
    { name: 'p99 under the target', alert: 'WaRouterWebhookLatencyHigh', at: '20m', series: latency(target * 0.9), fires: [] },
    { name: 'a job dead-lettered', alert: 'WaRouterDeadLettersGrowing', at: '6m', series: { [s('wa_router_queue_jobs', { queue: 'inbound', state: 'failed' })]: '0 0 0 0 1 1 1' }, fires: [{ ...ns, queue: 'inbound' }] },
    { name: 'dead letters unchanged for 15 minutes', alert: 'WaRouterDeadLettersGrowing', at: '25m', series: { [s('wa_router_queue_jobs', { queue: 'inbound', state: 'failed' })]: '0 0 0 0 1x30' }, fires: [] },
    { name: 'dead letters steady', alert: 'WaRouterDeadLettersGrowing', at: '6m', series: { [s('wa_router_queue_jobs', { queue: 'inbound', state: 'failed' })]: '2x10' }, fires: [] },
    { name: 'inbound backlog ageing', alert: 'WaRouterInboundBacklogOld', at: '9m', series: { [s('wa_router_queue_oldest_job_seconds', { queue: 'inbound' })]: `0 ${backlog * 2}x10` }, fires: [ns] },
    { name: 'inbound backlog young, history old', alert: 'WaRouterInboundBacklogOld', at: '9m', series: { [s('wa_router_queue_oldest_job_seconds', { queue: 'inbound' })]: `${backlog / 2}x10`, [s('wa_router_queue_oldest_job_seconds', { queue: 'history' })]: '3600x10' }, fires: [] },
    // The gauge holds the Unix time of the last applied chunk; promtool's clock starts at 0.
    { name: `history sync without a chunk for ${stall + 1} minutes`, alert: 'WaRouterHistorySyncStalled', at: `${stall + 1}m`, series: { [s('wa_router_history_sync_last_applied_timestamp_seconds', { channel: '1' })]: `0x${stall + 20}` }, fires: [{ ...ns, channel: '1' }] },
    { name: `history sync without a chunk for ${stall - 1} minutes`, alert: 'WaRouterHistorySyncStalled', at: `${stall - 1}m`, series: { [s('wa_router_history_sync_last_applied_timestamp_seconds', { channel: '1' })]: `0x${stall + 20}` }, fires: [] },
    { name: 'history sync applying a chunk a minute', alert: 'WaRouterHistorySyncStalled', at: `${stall + 10}m`, series: { [s('wa_router_history_sync_last_applied_timestamp_seconds', { channel: '1' })]: `0+60x${stall + 20}` }, fires: [] },
    // The series is born at the first applied chunk (minute 3), with that chunk's time as its value.
    { name: 'history sync whose first chunk came 6 minutes ago', alert: 'WaRouterHistorySyncStalled', at: '9m', series: { [s('wa_router_history_sync_last_applied_timestamp_seconds', { channel: '7' })]: `_x3 180x${stall + 20}` }, fires: [] },
    { name: 'channel circuit open', alert: 'WaRouterOutboundCircuitOpen', at: '7m', series: { [s('wa_router_circuit_open', { channel: '3' })]: '2x10' }, fires: [{ ...ns, channel: '3' }] },
    { name: 'channel circuit flapping', alert: 'WaRouterOutboundCircuitOpen', at: '7m', series: { [s('wa_router_circuit_open', { channel: '3' })]: '2 1 2 1 2 1 2 1 2 1' }, fires: [] },
    { name: 'a channel paused', alert: 'WaRouterChannelPaused', at: '3m', series: { [s('wa_router_channels_paused')]: '0 0 1 1 1' }, fires: [ns] },
    { name: 'no channel paused', alert: 'WaRouterChannelPaused', at: '3m', series: { [s('wa_router_channels_paused')]: '0x5' }, fires: [] },
    { name: 'queries waiting for a connection', alert: 'WaRouterDbPoolSaturated', at: '7m', series: { [s('wa_router_db_pool_connections', { job: 'wa-router-worker', instance: 'w1', state: 'waiting' })]: '3x10', [s('wa_router_db_pool_connections', { job: 'wa-router-web', instance: 'a1', state: 'waiting' })]: '0x10' }, fires: [{ ...ns, job: 'wa-router-worker', instance: 'w1' }] },
    { name: 'a moment of waiting', alert: 'WaRouterDbPoolSaturated', at: '7m', series: { [s('wa_router_db_pool_connections', { job: 'wa-router-worker', instance: 'w1', state: 'waiting' })]: '0 0 0 0 4 0 0 0' }, fires: [] },
    { name: 'replica gone', alert: 'WaRouterRedisReplicaMissing', at: '5m', series: { [s('wa_router_redis_online_replicas', { instance: 'a1' })]: `${p.redis.replicas} 0x8` }, fires: [ns] },
    { name: 'replica connected but never in sync', alert: 'WaRouterRedisReplicaMissing', at: '5m', series: { [s('wa_router_redis_connected_replicas', { instance: 'a1' })]: `${p.redis.replicas}x8`, [s('wa_router_redis_online_replicas', { instance: 'a1' })]: `${p.redis.replicas} 0x8` }, fires: [ns] },
    { name: 'replicas all in sync', alert: 'WaRouterRedisReplicaMissing', at: '5m', series: { [s('wa_router_redis_connected_replicas', { instance: 'a1' })]: `${p.redis.replicas}x8`, [s('wa_router_redis_online_replicas', { instance: 'a1' })]: `${p.redis.replicas}x8` }, fires: [] },
    { name: 'acks on the master alone for 15 minutes', alert: 'WaRouterAckLocalFallback', at: '20m', series: { [s('wa_router_ack_local_fallback_total', { instance: 'a1' })]: '0x4 0+50x20' }, fires: [ns] },
    { name: 'acks on the master alone during a replica restart', alert: 'WaRouterAckLocalFallback', at: '12m', series: { [s('wa_router_ack_local_fallback_total', { instance: 'a1' })]: '0x4 0+50x2 100x20' }, fires: [], shorterThanFor: true },
    { name: 'master changed', alert: 'WaRouterRedisFailover', at: '5m', series: { [s('wa_router_redis_master_changes_total', { instance: 'a1' })]: '0 0 0 1 1 1' }, fires: [ns] },
    { name: 'master changed 20 minutes ago', alert: 'WaRouterRedisFailover', at: '25m', series: { [s('wa_router_redis_master_changes_total', { instance: 'a1' })]: '0 0 0 1x30' }, fires: [] },
    { name: 'web target down', alert: 'WaRouterTargetDown', at: '5m', series: { [s('up', { job: 'wa-router-web', instance: 'a1' })]: '1 1 0 0 0 0', [s('up', { job: 'wa-router-worker', instance: 'w1' })]: '1x6' }, fires: [{ ...ns, job: 'wa-router-web', instance: 'a1' }] },
    { name: 'another namespace\'s target down', alert: 'WaRouterTargetDown', at: '5m', series: { [`up{namespace="other",job="wa-router-web",instance="b1"}`]: '0x6', [s('up', { job: 'wa-router-web', instance: 'a1' })]: '1x6' }, fires: [] },
    { name: 'no worker target', alert: 'WaRouterTargetMissing', at: '7m', series: { [s('up', { job: 'wa-router-web', instance: 'a1' })]: '1x8' }, fires: [{ ...ns, job: 'wa-router-worker' }] },
    { name: 'both targets present', alert: 'WaRouterTargetMissing', at: '7m', series: { [s('up', { job: 'wa-router-web', instance: 'a1' })]: '1x8', [s('up', { job: 'wa-router-worker', instance: 'w1' })]: '1x8' }, fires: [] },
    { name: 'area events waiting', alert: 'WaRouterAreaBacklog', at: '8m', series: { [s('wa_router_forward_oldest_seconds', { area: 'sales' })]: `0 ${area * 2}x10` }, fires: [{ ...ns, area: 'sales' }] },
    { name: 'area keeping up', alert: 'WaRouterAreaBacklog', at: '8m', series: { [s('wa_router_forward_oldest_seconds', { area: 'sales' })]: `${area / 2}x10` }, fires: [] },
    { name: 'area circuit open', alert: 'WaRouterAreaCircuitOpen', at: '7m', series: { [s('wa_router_forward_circuit', { area: 'sales' })]: '2x10' }, fires: [{ ...ns, area: 'sales' }] },
    { name: 'area circuit half-open', alert: 'WaRouterAreaCircuitOpen', at: '7m', series: { [s('wa_router_forward_circuit', { area: 'sales' })]: '1x10' }, fires: [] },
    // Each alert with `for:` fed its trouble for a minute less than that: pending, not firing.
    { name: '10% answered 503 for 4 minutes', alert: 'WaRouterWebhook5xxRatio', at: '5m', series: webhook(90, 10), fires: [], shorterThanFor: true },
    { name: 'p99 at twice the target for 9 minutes', alert: 'WaRouterWebhookLatencyHigh', at: '10m', series: latency(target * 2), fires: [], shorterThanFor: true },
    { name: 'inbound backlog ageing for 4 minutes', alert: 'WaRouterInboundBacklogOld', at: '5m', series: { [s('wa_router_queue_oldest_job_seconds', { queue: 'inbound' })]: `0 ${backlog * 2}x10` }, fires: [], shorterThanFor: true },
    { name: 'channel circuit open for 4 minutes', alert: 'WaRouterOutboundCircuitOpen', at: '4m', series: { [s('wa_router_circuit_open', { channel: '3' })]: '2x4 0x5' }, fires: [], shorterThanFor: true },
    { name: 'queries waiting for 4 minutes', alert: 'WaRouterDbPoolSaturated', at: '4m', series: { [s('wa_router_db_pool_connections', { job: 'wa-router-worker', instance: 'w1', state: 'waiting' })]: '3x4 0x5' }, fires: [], shorterThanFor: true },
    { name: 'replica out of sync for 1 minute', alert: 'WaRouterRedisReplicaMissing', at: '2m', series: { [s('wa_router_redis_online_replicas', { instance: 'a1' })]: `${p.redis.replicas} 0 0 ${p.redis.replicas}x5` }, fires: [], shorterThanFor: true },
    { name: 'web target down for 1 minute', alert: 'WaRouterTargetDown', at: '3m', series: { [s('up', { job: 'wa-router-web', instance: 'a1' })]: '1 1 0 0 1 1', [s('up', { job: 'wa-router-worker', instance: 'w1' })]: '1x6' }, fires: [], shorterThanFor: true },
    { name: 'no worker target for 4 minutes', alert: 'WaRouterTargetMissing', at: '4m', series: { [s('up', { job: 'wa-router-web', instance: 'a1' })]: '1x8', [s('up', { job: 'wa-router-worker', instance: 'w1' })]: '_x5 1x3' }, fires: [], shorterThanFor: true },
    { name: 'area events waiting for 4 minutes', alert: 'WaRouterAreaBacklog', at: '5m', series: { [s('wa_router_forward_oldest_seconds', { area: 'sales' })]: `0 ${area * 2}x4 0x5` }, fires: [], shorterThanFor: true },
    { name: 'area circuit open for 4 minutes', alert: 'WaRouterAreaCircuitOpen', at: '4m', series: { [s('wa_router_forward_circuit', { area: 'sales' })]: '2x4 0x5' }, fires: [], shorterThanFor: true },
  ];
}

describe.each(PRESET_NAMES)('%s', (name) => {
  const preset = presets[name];
  const groups = alertGroups(preset, NS);

  it('promtool check rules accepts the committed rule file', () => {
    const r = run(promtool, ['check', 'rules', monitoringFilesOf(name).rules]);
    expect(r.output).toContain(`SUCCESS: ${groups.flatMap((g) => g.rules).length} rules found`);
    expect(r.status, r.output).toBe(0);
  });

  it('every alert fires on trouble and stays silent when healthy (promtool test rules)', () => {
    const all = cases(preset);
    const alerts = groups.flatMap((g) => g.rules);
    // Each alert needs a firing and a silent case.
    for (const a of alerts) {
      const mine = all.filter((c) => c.alert === a.alert);
      expect(mine.some((c) => c.fires.length > 0), `${a.alert} has a firing case`).toBe(true);
      expect(mine.some((c) => c.fires.length === 0), `${a.alert} has a silent case`).toBe(true);
      if (a.for) expect(mine.some((c) => c.shorterThanFor), `${a.alert} has a case shorter than its for: ${a.for}`).toBe(true);
    }
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-promtool-'));
    // promtool compares annotations too; they are templates checked by `check rules` above, so the
    // unit tests run the same expressions, durations and labels with the annotations left out.
    const bare = { groups: groups.map((g) => ({ name: g.name, rules: g.rules.map(({ annotations: _a, ...r }) => r) })) };
    fs.writeFileSync(path.join(dir, 'rules.json'), JSON.stringify(bare));
    const severity = new Map(alerts.map((a) => [a.alert, a.labels.severity]));
    const tests = all.map((c) => ({
      name: `${c.alert}: ${c.name}`,
      interval: '1m',
      input_series: Object.entries(c.series).map(([series, values]) => ({ series, values })),
      alert_rule_test: [{ eval_time: c.at, alertname: c.alert, exp_alerts: c.fires.map((labels) => ({ exp_labels: { ...labels, severity: severity.get(c.alert) } })) }],
    }));
    fs.writeFileSync(path.join(dir, 'tests.json'), JSON.stringify({ rule_files: ['rules.json'], evaluation_interval: '1m', tests }, null, 1));
    const r = run(promtool, ['test', 'rules', 'tests.json'], dir);
    expect(r.status, r.output).toBe(0);
    expect(r.output).toContain('SUCCESS');
    fs.rmSync(dir, { recursive: true, force: true });
  });
});
