// The monitoring objects: ServiceMonitors that match the Services, alerts with the annotations an
// on-call person needs (and a README section behind every runbook link), the preset's thresholds,
// the dashboard ConfigMap Grafana's sidecar picks up, and the opt-out for clusters without the Operator.
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { grafanaDashboard, PRESET_NAMES, presets, synthManifests, type Manifest } from '../src/index.js';
import { monitoringFiles, REPO_ROOT } from '../src/charts-files.js';
import type { AlertRule, RuleGroup } from '../src/monitoring/rules.js';
import { find, type Json } from './helpers.js';

const REQUIRED_ALERTS = [
  'WaRouterDeadLettersGrowing', 'WaRouterWebhook5xxRatio', 'WaRouterWebhookLatencyHigh', 'WaRouterInboundBacklogOld',
  'WaRouterOutboundCircuitOpen', 'WaRouterChannelPaused', 'WaRouterDbPoolSaturated', 'WaRouterRedisReplicaMissing',
  'WaRouterRedisFailover', 'WaRouterHistorySyncStalled', 'WaRouterTargetDown', 'WaRouterAreaBacklog', 'WaRouterAreaCircuitOpen',
];

const rulesOf = (manifests: readonly Manifest[]): AlertRule[] =>
  ((find(manifests, 'PrometheusRule', 'wa-router-alerts') as Json).spec.groups as RuleGroup[]).flatMap((g) => g.rules);

/** GitHub's anchor of a Markdown heading. */
const anchor = (heading: string) => heading.trim().toLowerCase().replace(/[^\w\- ]/g, '').replace(/ /g, '-');

describe.each(PRESET_NAMES)('%s', (name) => {
  const manifests = synthManifests(name);

  it('has a ServiceMonitor per role whose selector matches that role\'s Service and named port', () => {
    for (const role of ['web', 'worker']) {
      const sm = find(manifests, 'ServiceMonitor', `wa-router-${role}`) as Json;
      const svc = find(manifests, 'Service', `wa-router-${role}`) as Json;
      for (const [k, v] of Object.entries(sm.spec.selector.matchLabels as Record<string, string>)) expect(svc.metadata.labels[k], k).toBe(v);
      expect(svc.spec.ports.map((p: Json) => p.name)).toContain(sm.spec.endpoints[0].port);
      expect(sm.spec.endpoints[0].path).toBe('/metrics');
    }
  });

  it('alerts on everything the runbook covers, each with summary, description, severity and a README runbook', () => {
    const rules = rulesOf(manifests);
    expect(rules.map((r) => r.alert)).toEqual(expect.arrayContaining(REQUIRED_ALERTS));
    const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
    const anchors = new Set([...readme.matchAll(/^#{1,6} (.+)$/gm)].map((m) => anchor(m[1]!)));
    for (const r of rules) {
      expect(r.annotations.summary, r.alert).toBeTruthy();
      expect(r.annotations.description, r.alert).toBeTruthy();
      expect(['critical', 'warning'], r.alert).toContain(r.labels.severity);
      const [, hash] = r.annotations.runbook_url.split('#');
      expect(anchors.has(hash!), `README has no section for ${r.alert} (#${hash})`).toBe(true);
    }
  });

  it('takes its thresholds from the preset: webhook p99 target, Redis replicas, backlog age', () => {
    const p = presets[name];
    const byName = new Map(rulesOf(manifests).map((r) => [r.alert, r.expr]));
    expect(byName.get('WaRouterWebhookLatencyHigh')).toMatch(new RegExp(`> ${p.targets.webhookP99Ms / 1000}$`));
    expect(byName.get('WaRouterRedisReplicaMissing')).toMatch(new RegExp(`< ${p.redis.replicas}$`));
    expect(byName.get('WaRouterInboundBacklogOld')).toMatch(new RegExp(`> ${p.monitoring.inboundBacklogSeconds}$`));
    const latency = rulesOf(synthManifests(name, { overrides: { targets: { webhookP99Ms: 750 } } })).find((r) => r.alert === 'WaRouterWebhookLatencyHigh')!;
    expect(latency.expr).toMatch(/> 0\.75$/);
  });

  it('ships the dashboard as a ConfigMap labelled for Grafana, equal to the committed file', () => {
    const cm = find(manifests, 'ConfigMap', 'wa-router-dashboard') as Json;
    expect(cm.metadata.labels.grafana_dashboard).toBe('1');
    const dashboard = JSON.parse(cm.data['wa-router.json'] as string);
    const file = monitoringFiles(presets[name]).find((f) => f.file.endsWith('grafana-dashboard.json'))!;
    expect(JSON.parse(fs.readFileSync(file.file, 'utf8'))).toEqual(dashboard);
    const titles = (dashboard.panels as Json[]).filter((p) => p.type !== 'row').map((p) => p.title);
    expect(titles).toEqual(expect.arrayContaining(['Webhook rate by outcome', 'Oldest waiting job age', 'Dead letters', 'Meta errors by code', 'Circuit state per channel', 'Pacing', 'History sync progress', 'DB pool', 'Realtime clients', 'Deliveries per area']));
  });

  it('filters every series of every panel by the namespace picked in the dashboard, one install\'s figures apart from another\'s', () => {
    const dashboard = grafanaDashboard(presets[name]) as { templating: { list: Json[] }; panels: { targets?: { expr: string }[] }[] };
    const variable = dashboard.templating.list.find((v) => v.name === 'namespace')!;
    expect(variable).toMatchObject({ type: 'query', multi: true, includeAll: true });
    const exprs = dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
    expect(exprs.length).toBeGreaterThanOrEqual(25);
    for (const expr of exprs) {
      const selectors = expr.match(/\b(?:wa_router_[a-z0-9_]+|up)\b(?:\{[^}]*\})?(?!\s*\()/g) ?? [];
      expect(selectors.length, expr).toBeGreaterThan(0);
      for (const sel of selectors) expect(sel, expr).toContain('namespace=~"$namespace"');
    }
  });

  it('leaves the Operator kinds out when the cluster has no Prometheus Operator, keeping the dashboard', () => {
    const plain = synthManifests(name, { overrides: { monitoring: { prometheusOperator: false } } });
    expect(plain.filter((m) => m.apiVersion.startsWith('monitoring.coreos.com/'))).toEqual([]);
    expect(find(plain, 'ConfigMap', 'wa-router-dashboard')).toBeTruthy();
  });

  it('carries monitoring.extraLabels to the ServiceMonitors and the PrometheusRule, never over its own selector labels', () => {
    const labelled = synthManifests(name, { overrides: { monitoring: { extraLabels: { release: 'kube-prometheus-stack', 'app.kubernetes.io/name': 'other' } } } });
    const kinds = labelled.filter((m) => m.apiVersion.startsWith('monitoring.coreos.com/'));
    expect(kinds.map((m) => m.kind).sort()).toEqual(['PrometheusRule', 'ServiceMonitor', 'ServiceMonitor']);
    for (const m of kinds) {
      const l = (m.metadata as { labels: Record<string, string> }).labels;
      expect(l.release, `${m.kind} ${String(m.metadata.name)}`).toBe('kube-prometheus-stack');
      expect(l['app.kubernetes.io/name']).toBe('wa-router');
    }
    // The default adds nothing: the committed charts stay as they were.
    for (const m of synthManifests(name).filter((x) => x.apiVersion.startsWith('monitoring.coreos.com/'))) {
      expect((m.metadata as { labels: Record<string, string> }).labels.release).toBeUndefined();
    }
  });

  it('the committed rule file and dashboard are what the code writes', () => {
    for (const { file, text } of monitoringFiles(presets[name])) expect(fs.readFileSync(file, 'utf8'), file).toBe(text);
  });
});
