// The WhatsAppRouter CustomResourceDefinition. Its `spec.overrides` schema is generated from the
// zod schema `make synth` checks overrides with, so the cluster and the CLI accept the same
// fields. Kubernetes wants a structural OpenAPI v3 schema: no $ref, no `additionalProperties`
// beside `properties`, no `anyOf` types, quantities as int-or-string.
import { z } from 'zod';
import { PRESET_NAMES } from '../presets.js';
import { presetSchema } from '../validate.js';

export const GROUP = 'wa-router.dev';
export const VERSION = 'v1alpha1';
export const API_VERSION = `${GROUP}/${VERSION}`;
export const KIND = 'WhatsAppRouter';
export const PLURAL = 'whatsapprouters';
/** kubectl accepts a custom resource as an ApplySet parent only when its CRD carries this label. */
export const PARENT_TYPE_LABEL = 'applyset.kubernetes.io/is-parent-type';

/** The components whose readiness the status reports. */
export const COMPONENTS = ['redis', 'sentinel', 'pgbouncer', 'postgres', 'web', 'worker', 'migration'] as const;
export type Component = (typeof COMPONENTS)[number];

type JsonSchema = { [key: string]: unknown };

/**
 * A JSON schema as Kubernetes takes it: `required` dropped (overrides are partial, any field may
 * be left to the preset), a string-or-number becomes int-or-string, and keywords Kubernetes
 * refuses (propertyNames, $schema) go. `additionalProperties: false` (not allowed beside
 * `properties`) becomes `x-kubernetes-preserve-unknown-fields`: a pruned field would vanish
 * without a word for every client that does not ask for strict field validation, while a kept one
 * reaches the preset's checks, which report it as InvalidSpec naming the field.
 */
function structural(s: JsonSchema): JsonSchema {
  const out: JsonSchema = {};
  const anyOf = s['anyOf'] as JsonSchema[] | undefined;
  if (anyOf) {
    const types = new Set(anyOf.map((a) => a['type']));
    if (types.size === 2 && types.has('string') && (types.has('number') || types.has('integer'))) return { 'x-kubernetes-int-or-string': true };
    throw new Error(`no structural form for anyOf ${JSON.stringify(anyOf)}`);
  }
  for (const [k, v] of Object.entries(s)) {
    if (k === 'required' || k === 'propertyNames' || k === '$schema') continue;
    if (k === 'additionalProperties' && v === false) {
      out['x-kubernetes-preserve-unknown-fields'] = true;
      continue;
    }
    if (k === 'properties') {
      out[k] = Object.fromEntries(Object.entries(v as Record<string, JsonSchema>).map(([p, ps]) => [p, structural(ps)]));
    } else if (k === 'additionalProperties' && typeof v === 'object') {
      out[k] = structural(v as JsonSchema);
    } else {
      out[k] = v;
    }
  }
  return out;
}

/** Rules the OpenAPI schema cannot state: each is a relation between two fields of one object. */
const CEL_RULES: Record<string, { rule: string; message: string; fieldPath?: string }[]> = {
  web: [{ rule: '!has(self.replicas) || !has(self.maxReplicas) || self.replicas <= self.maxReplicas', message: 'replicas must not exceed maxReplicas (the HPA ceiling)', fieldPath: '.replicas' }],
  worker: [{ rule: '!has(self.replicas) || !has(self.maxReplicas) || self.replicas <= self.maxReplicas', message: 'replicas must not exceed maxReplicas (the HPA ceiling)', fieldPath: '.replicas' }],
  'redis.sentinel': [{ rule: '!has(self.quorum) || !has(self.replicas) || (self.quorum <= self.replicas && self.quorum > self.replicas / 2)', message: 'quorum must be a majority of the Sentinels', fieldPath: '.quorum' }],
  postgres: [{ rule: '!has(self.mode) || self.mode != \'external\' || has(self.external)', message: 'mode "external" needs external.host, external.port and external.database', fieldPath: '.external' }],
};

/** The OpenAPI schema of `spec.overrides`: the preset schema, every field optional. */
export function overridesSchema(): JsonSchema {
  const json = z.toJSONSchema(presetSchema, {
    target: 'openapi-3.0',
    io: 'input',
    unrepresentable: 'any',
    // zod writes a regex's source without its flags; RE2 (the API server's) spells them inline.
    override: (ctx) => {
      const checks = (ctx.zodSchema as { _zod: { def: { checks?: { _zod: { def: { pattern?: unknown } } }[] } } })._zod.def.checks ?? [];
      const re = checks.map((c) => c._zod.def.pattern).find((p): p is RegExp => p instanceof RegExp);
      if (re?.flags.includes('i') && typeof ctx.jsonSchema['pattern'] === 'string') ctx.jsonSchema['pattern'] = `(?i)${re.source}`;
    },
  }) as JsonSchema;
  const schema = structural(json);
  for (const [path, rules] of Object.entries(CEL_RULES)) {
    let node = schema;
    for (const key of path.split('.')) node = (node['properties'] as Record<string, JsonSchema>)[key]!;
    node['x-kubernetes-validations'] = rules;
  }
  return schema;
}

const condition = {
  type: 'object',
  required: ['type', 'status', 'lastTransitionTime', 'reason', 'message'],
  properties: {
    type: { type: 'string', maxLength: 316 },
    status: { type: 'string', enum: ['True', 'False', 'Unknown'] },
    observedGeneration: { type: 'integer', format: 'int64', minimum: 0 },
    lastTransitionTime: { type: 'string', format: 'date-time' },
    reason: { type: 'string', maxLength: 1024, minLength: 1, pattern: '^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$' },
    message: { type: 'string', maxLength: 32768 },
  },
};

const secretName = { type: 'string', minLength: 1, maxLength: 253, pattern: '^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$' };

/** The CRD as a plain manifest. */
export function whatsAppRouterCrd(): Record<string, unknown> {
  const component = { type: 'object', properties: { ready: { type: 'integer' }, desired: { type: 'integer' } } };
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    metadata: { name: `${PLURAL}.${GROUP}`, labels: { 'app.kubernetes.io/name': 'wa-router-operator', 'app.kubernetes.io/part-of': 'wa-router', [PARENT_TYPE_LABEL]: 'true' } },
    spec: {
      group: GROUP,
      scope: 'Namespaced',
      names: { kind: KIND, listKind: `${KIND}List`, plural: PLURAL, singular: 'whatsapprouter', shortNames: ['war'], categories: ['wa-router'] },
      versions: [{
        name: VERSION,
        served: true,
        storage: true,
        subresources: { status: {} },
        additionalPrinterColumns: [
          { name: 'Preset', type: 'string', jsonPath: '.spec.preset' },
          { name: 'Ready', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].status' },
          { name: 'Web', type: 'string', jsonPath: '.status.summary.web', description: 'ready/desired web pods' },
          { name: 'Worker', type: 'string', jsonPath: '.status.summary.worker', description: 'ready/desired worker pods' },
          { name: 'Reason', type: 'string', jsonPath: '.status.conditions[?(@.type=="Ready")].reason', priority: 1 },
          { name: 'Age', type: 'date', jsonPath: '.metadata.creationTimestamp' },
        ],
        schema: {
          openAPIV3Schema: {
            type: 'object',
            description: 'A wa-router installation in this namespace, synthesized from a sizing preset and reconciled by the operator.',
            required: ['spec'],
            properties: {
              apiVersion: { type: 'string' },
              kind: { type: 'string' },
              metadata: { type: 'object' },
              spec: {
                type: 'object',
                required: ['preset'],
                properties: {
                  preset: { type: 'string', enum: [...PRESET_NAMES], description: 'The sizing preset (see the README\'s presets table).' },
                  overrides: { ...overridesSchema(), description: 'Preset fields to change: exactly what `make synth OVERRIDES=file.yaml` accepts.' },
                  image: { type: 'string', minLength: 1, description: 'The wa-router image (pin it by digest).' },
                  secrets: {
                    type: 'object',
                    description: 'Names of the four Secrets the manifests read (created by you, never by the operator).',
                    properties: { app: secretName, postgres: secretName, redis: secretName, pgbouncer: secretName },
                  },
                  paused: { type: 'boolean', description: 'While true nothing is applied or pruned; status is still reported.' },
                },
              },
              status: {
                type: 'object',
                properties: {
                  observedGeneration: { type: 'integer', format: 'int64' },
                  conditions: { type: 'array', items: condition, 'x-kubernetes-list-type': 'map', 'x-kubernetes-list-map-keys': ['type'] },
                  components: { type: 'object', properties: Object.fromEntries(COMPONENTS.map((c) => [c, component])) },
                  summary: { type: 'object', properties: { web: { type: 'string' }, worker: { type: 'string' } } },
                  preset: { type: 'string' },
                  image: { type: 'string' },
                  appliedObjects: { type: 'integer' },
                  lastReconcileTime: { type: 'string', format: 'date-time' },
                },
              },
            },
          },
        },
      }],
    },
  };
}
