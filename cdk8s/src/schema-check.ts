// Offline schema validation of synthesized objects against the Kubernetes OpenAPI schemas
// (kubernetes-models): what `kubectl apply --dry-run=server` would reject for shape, without a cluster.
import type { Manifest } from './synth.js';

interface Validatable {
  validate(): void;
}
type ModelClass = new (data: unknown) => Validatable;

/** Kinds served by CRDs we do not ship schemas for; they are checked by the API server in k8s-tests. */
const CRD_GROUPS = new Set(['keda.sh', 'monitoring.coreos.com']);

async function modelFor(apiVersion: string, kind: string): Promise<ModelClass | undefined> {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') : ['', apiVersion];
  const mod = (await import(group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`)) as Record<string, unknown>;
  return mod[kind] as ModelClass | undefined;
}

/** One message per object that does not match its schema; empty when all do. */
export async function schemaErrors(manifests: readonly Manifest[]): Promise<string[]> {
  const errors: string[] = [];
  for (const m of manifests) {
    const where = `${m.kind}/${m.metadata.name}`;
    const group = m.apiVersion.includes('/') ? m.apiVersion.split('/')[0]! : '';
    if (CRD_GROUPS.has(group)) continue;
    let Model: ModelClass | undefined;
    try {
      Model = await modelFor(m.apiVersion, m.kind);
    } catch {
      Model = undefined;
    }
    if (!Model) {
      errors.push(`${where}: no schema for ${m.apiVersion} ${m.kind}`);
      continue;
    }
    try {
      new Model(m).validate();
    } catch (err) {
      errors.push(`${where}: ${(err as Error).message}`);
    }
  }
  return errors;
}
