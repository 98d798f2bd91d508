import { stringify } from 'yaml';
import type { Manifest } from './synth.js';

/** A multi-document YAML stream, the way `kubectl apply -f` reads it. */
export function toYaml(manifests: readonly Manifest[]): string {
  return manifests.map((m) => stringify(m, { lineWidth: 0 })).join('---\n');
}
