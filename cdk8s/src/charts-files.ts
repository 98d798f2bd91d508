// Where the committed manifests live, and how they are written: shared by synth-all and check-charts.
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');

export function chartFile(preset: string, root = path.join(REPO_ROOT, 'charts')): string {
  return path.join(root, preset, 'wa-router.k8s.yaml');
}
