// The operator's own manifests (charts/operator/): the CRD, a namespace, a ServiceAccount with
// least-privilege RBAC (the kinds the chart renders, the resources' status, Leases only in its own
// namespace), and a Deployment of two replicas (one leads, one stands by).
import { ApiObject, App, Chart } from 'cdk8s';
import { k8s } from 'cdk8s-plus-27';
import { containerSecurity, podSecurity, tmpVolume } from '../constructs/common.js';
import { GROUP, PLURAL, whatsAppRouterCrd } from './crd.js';

export const OPERATOR_NAMESPACE = 'wa-router-system';
export const OPERATOR_NAME = 'wa-router-operator';
export const DEFAULT_OPERATOR_IMAGE = 'ghcr.io/wa-router/wa-router-operator:latest';

export interface OperatorManifestOptions {
  /** @default 'wa-router-system' */
  readonly namespace?: string;
  /** @default 'ghcr.io/wa-router/wa-router-operator:latest' */
  readonly image?: string;
}

// Watched kinds come from informers (list, watch); server-side apply is a patch, and creating
// with it needs create too; pruning deletes. Nothing is ever updated with a PUT.
const WRITE = ['list', 'watch', 'create', 'patch', 'delete'];
// Kinds of optional CRDs are not watched: one object is read (get) before it is applied, and the
// set is listed when pruning.
const WRITE_UNWATCHED = ['get', 'list', 'create', 'patch', 'delete'];

/** What the operator may touch, cluster-wide: exactly the kinds the chart renders. */
export const OPERATOR_RULES: k8s.PolicyRule[] = [
  // patch: the ApplySet parent's label and annotations on the resource's metadata.
  { apiGroups: [GROUP], resources: [PLURAL], verbs: ['list', 'watch', 'patch'] },
  // The status is only ever merge-patched.
  { apiGroups: [GROUP], resources: [`${PLURAL}/status`], verbs: ['patch'] },
  // Owner references that block deletion need it where that admission plugin is on.
  { apiGroups: [GROUP], resources: [`${PLURAL}/finalizers`], verbs: ['update'] },
  { apiGroups: [''], resources: ['serviceaccounts', 'configmaps', 'services'], verbs: WRITE },
  { apiGroups: ['apps'], resources: ['deployments', 'statefulsets'], verbs: WRITE },
  { apiGroups: ['batch'], resources: ['jobs'], verbs: WRITE },
  { apiGroups: ['autoscaling'], resources: ['horizontalpodautoscalers'], verbs: WRITE },
  { apiGroups: ['networking.k8s.io'], resources: ['networkpolicies'], verbs: WRITE },
  { apiGroups: ['policy'], resources: ['poddisruptionbudgets'], verbs: WRITE },
  { apiGroups: ['monitoring.coreos.com'], resources: ['servicemonitors', 'prometheusrules'], verbs: WRITE_UNWATCHED },
  { apiGroups: ['keda.sh'], resources: ['scaledobjects', 'triggerauthentications'], verbs: WRITE_UNWATCHED },
];

export function operatorManifests(opts: OperatorManifestOptions = {}): Record<string, unknown>[] {
  const namespace = opts.namespace ?? OPERATOR_NAMESPACE;
  const app = new App({ outdir: '/nonexistent', recordConstructMetadata: false });
  const labels = { 'app.kubernetes.io/name': OPERATOR_NAME, 'app.kubernetes.io/part-of': 'wa-router' };
  const chart = new Chart(app, 'operator', { namespace, labels });
  new ApiObject(chart, 'crd', whatsAppRouterCrd() as unknown as ConstructorParameters<typeof ApiObject>[2]);
  new k8s.KubeNamespace(chart, 'namespace', {
    metadata: { name: namespace, labels: { 'pod-security.kubernetes.io/enforce': 'restricted', 'pod-security.kubernetes.io/enforce-version': 'latest' } },
  });
  new k8s.KubeServiceAccount(chart, 'service-account', { metadata: { name: OPERATOR_NAME } });
  new k8s.KubeClusterRole(chart, 'cluster-role', { metadata: { name: OPERATOR_NAME }, rules: OPERATOR_RULES });
  new k8s.KubeClusterRoleBinding(chart, 'cluster-role-binding', {
    metadata: { name: OPERATOR_NAME },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: OPERATOR_NAME },
    subjects: [{ kind: 'ServiceAccount', name: OPERATOR_NAME, namespace }],
  });
  new k8s.KubeRole(chart, 'leader-election', {
    metadata: { name: `${OPERATOR_NAME}-leader-election` },
    rules: [{ apiGroups: ['coordination.k8s.io'], resources: ['leases'], verbs: ['get', 'create', 'update'] }],
  });
  new k8s.KubeRoleBinding(chart, 'leader-election-binding', {
    metadata: { name: `${OPERATOR_NAME}-leader-election` },
    roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'Role', name: `${OPERATOR_NAME}-leader-election` },
    subjects: [{ kind: 'ServiceAccount', name: OPERATOR_NAME, namespace }],
  });
  const probe = (path: string): k8s.Probe => ({ httpGet: { path, port: k8s.IntOrString.fromString('http') }, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 });
  new k8s.KubeDeployment(chart, 'deployment', {
    metadata: { name: OPERATOR_NAME },
    spec: {
      // One leads (the Lease), one stands by to take over within the lease time.
      replicas: 2,
      selector: { matchLabels: labels },
      template: {
        metadata: { labels },
        spec: {
          serviceAccountName: OPERATOR_NAME,
          securityContext: podSecurity(1000),
          containers: [{
            name: 'operator',
            image: opts.image ?? DEFAULT_OPERATOR_IMAGE,
            env: [
              { name: 'OPERATOR_NAMESPACE', valueFrom: { fieldRef: { fieldPath: 'metadata.namespace' } } },
              { name: 'POD_NAME', valueFrom: { fieldRef: { fieldPath: 'metadata.name' } } },
            ],
            ports: [{ name: 'http', containerPort: 8080 }],
            securityContext: containerSecurity,
            resources: {
              requests: { cpu: k8s.Quantity.fromString('50m'), memory: k8s.Quantity.fromString('128Mi') },
              limits: { cpu: k8s.Quantity.fromString('500m'), memory: k8s.Quantity.fromString('384Mi') },
            },
            readinessProbe: probe('/readyz'),
            livenessProbe: probe('/healthz'),
            volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
          }],
          volumes: [tmpVolume()],
        },
      },
    },
  });
  return chart.toJson().map((m: { kind: string; metadata: { namespace?: string } }) => {
    if (['Namespace', 'CustomResourceDefinition', 'ClusterRole', 'ClusterRoleBinding'].includes(m.kind)) delete m.metadata.namespace;
    return m;
  });
}
