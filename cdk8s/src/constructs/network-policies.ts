// Ingress is denied by default; each component admits exactly the pods that need it. Egress stays
// open: the service calls Meta's Graph API and the areas' webhooks, whose addresses vary.
import { Construct } from 'constructs';
import { k8s } from 'cdk8s-plus-27';
import { APP, int, labels, nameOf, PORTS, selectorLabels } from './common.js';

const from = (...components: string[]): k8s.NetworkPolicyPeer[] =>
  components.map((c) => ({ podSelector: { matchLabels: selectorLabels(c) } }));

export class NetworkPolicies extends Construct {
  constructor(scope: Construct, id: string, props: { readonly postgresInCluster: boolean; readonly postgresReplica: boolean; readonly kedaNamespace?: string }) {
    super(scope, id);
    const policy = (component: string, ingress: k8s.NetworkPolicyIngressRule[], selector = selectorLabels(component)) =>
      new k8s.KubeNetworkPolicy(this, component, {
        metadata: { name: nameOf(component), labels: labels(component) },
        spec: { podSelector: { matchLabels: selector }, policyTypes: ['Ingress'], ingress },
      });

    new k8s.KubeNetworkPolicy(this, 'default-deny', {
      metadata: { name: nameOf('default-deny-ingress'), labels: { 'app.kubernetes.io/part-of': APP, 'app.kubernetes.io/managed-by': APP } },
      spec: { podSelector: {}, policyTypes: ['Ingress'] },
    });
    // Meta's webhooks and agents arrive through whatever ingress the cluster has; Prometheus scrapes both roles.
    policy('web', [{ ports: [{ protocol: 'TCP', port: int(PORTS.http) }] }]);
    policy('worker', [{ ports: [{ protocol: 'TCP', port: int(PORTS.http) }] }]);
    const clients = ['web', 'worker', 'migrate'];
    // KEDA's operator reads the queue depth from its own namespace.
    const keda: k8s.NetworkPolicyPeer[] = props.kedaNamespace ? [{ namespaceSelector: { matchLabels: { 'kubernetes.io/metadata.name': props.kedaNamespace } } }] : [];
    policy('redis', [{ from: [...from(...clients, 'redis', 'sentinel'), ...keda], ports: [{ protocol: 'TCP', port: int(PORTS.redis) }] }]);
    policy('sentinel', [{ from: [...from(...clients, 'redis', 'sentinel'), ...keda], ports: [{ protocol: 'TCP', port: int(PORTS.sentinel) }] }]);
    policy('pgbouncer', [{ from: from(...clients), ports: [{ protocol: 'TCP', port: int(PORTS.pgbouncer) }] }]);
    if (props.postgresInCluster) {
      policy('postgres', [{ from: from('pgbouncer', ...(props.postgresReplica ? ['postgres-replica'] : [])), ports: [{ protocol: 'TCP', port: int(PORTS.postgres) }] }]);
    }
  }
}
