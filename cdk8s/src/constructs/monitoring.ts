// What Prometheus and Grafana need: ServiceMonitors for web and worker and the alerts as a
// PrometheusRule (both Prometheus Operator kinds, left out with `monitoring.prometheusOperator:
// false`), and the dashboard as a ConfigMap that Grafana's sidecar imports by its label.
import { Construct } from 'constructs';
import { ApiObject } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import type { Preset } from '../presets.js';
import { grafanaDashboard } from '../monitoring/dashboard.js';
import { alertGroups } from '../monitoring/rules.js';
import { labels, nameOf, selectorLabels } from './common.js';

/** The key the dashboard has in its ConfigMap (Grafana's sidecar names the file after it). */
export const DASHBOARD_KEY = 'wa-router.json';

export class Monitoring extends Construct {
  constructor(scope: Construct, id: string, props: { readonly preset: Preset; readonly namespace: string }) {
    super(scope, id);
    const { preset } = props;
    new k8s.KubeConfigMap(this, 'dashboard', {
      metadata: { name: nameOf('dashboard'), labels: { ...labels('monitoring'), grafana_dashboard: '1' } },
      data: { [DASHBOARD_KEY]: JSON.stringify(grafanaDashboard(preset), null, 2) },
    });
    if (!preset.monitoring.prometheusOperator) return;
    for (const role of ['web', 'worker'] as const) {
      new ApiObject(this, `service-monitor-${role}`, {
        apiVersion: 'monitoring.coreos.com/v1',
        kind: 'ServiceMonitor',
        metadata: { name: nameOf(role), labels: { ...preset.monitoring.extraLabels, ...labels(role) } },
        spec: {
          selector: { matchLabels: selectorLabels(role) },
          endpoints: [{ port: 'http', path: '/metrics', interval: '30s' }],
        },
      });
    }
    new ApiObject(this, 'rules', {
      apiVersion: 'monitoring.coreos.com/v1',
      kind: 'PrometheusRule',
      metadata: { name: nameOf('alerts'), labels: { ...preset.monitoring.extraLabels, ...labels('monitoring') } },
      spec: { groups: alertGroups(preset, props.namespace) },
    });
  }
}
