// Where the committed manifests live, and how they are written: shared by synth-all and check-charts.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { grafanaDashboard } from './monitoring/dashboard.js';
import { alertGroups } from './monitoring/rules.js';
import type { Preset } from './presets.js';
import { DEFAULT_NAMESPACE } from './synth.js';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function chartFile(preset: string, root = path.join(REPO_ROOT, 'charts')): string {
  return path.join(root, preset, 'wa-router.k8s.yaml');
}

/** charts/operator/: the operator's CRD, RBAC and Deployment (`kubectl apply --server-side -f`). */
export function operatorFile(root = path.join(REPO_ROOT, 'charts')): string {
  return path.join(root, 'operator', 'wa-router-operator.k8s.yaml');
}

/**
 * charts/monitoring/<preset>/: the alerts as a plain Prometheus rule file (for a Prometheus without
 * the Operator, and for promtool) and the dashboard for importing into Grafana by hand.
 */
export function monitoringFiles(preset: Preset, root = path.join(REPO_ROOT, 'charts')): { file: string; text: string }[] {
  const dir = path.join(root, 'monitoring', preset.name);
  return [
    { file: path.join(dir, 'prometheus-rules.yaml'), text: stringify({ groups: alertGroups(preset, DEFAULT_NAMESPACE) }, { lineWidth: 0 }) },
    { file: path.join(dir, 'grafana-dashboard.json'), text: `${JSON.stringify(grafanaDashboard(preset), null, 2)}\n` },
  ];
}
