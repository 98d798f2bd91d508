// What a kubelet-less control plane needs to schedule a preset: Nodes with the preset's node-pool
// capacity kept Ready, and PersistentVolumes for the StatefulSets' claims (no provisioner here).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parse } from 'yaml';
import type { Manifest, Preset } from '@wa-router/cdk8s';
import { eventually, type Kube, type KubeObject } from './kube.js';

export const TEST_LABEL = 'wa-router.test/pool';

/** Registers the preset's node pool, each node's allocatable scaled by `scale` (1 = as documented). */
export async function registerNodePool(kube: Kube, preset: Preset, scale = 1): Promise<string[]> {
  const names: string[] = [];
  const cpu = `${Math.floor(preset.nodePool.allocatable.cpuCores * scale * 1000)}m`;
  const memory = `${Math.floor(preset.nodePool.allocatable.memoryGiB * scale * 1024 * 1024)}Ki`;
  for (let i = 0; i < preset.nodePool.nodes; i++) {
    const name = `${preset.name}-node-${i}`;
    names.push(name);
    const resources = { cpu, memory, pods: '110', 'ephemeral-storage': '100Gi' };
    const node = {
      apiVersion: 'v1', kind: 'Node',
      metadata: { name, labels: { [TEST_LABEL]: preset.name, 'kubernetes.io/hostname': name, 'kubernetes.io/os': 'linux' } },
      spec: {},
    };
    const created = await kube.request('POST', '/api/v1/nodes', node);
    if (created.status !== 201 && created.status !== 409) throw new Error(`create node ${name}: ${created.status} ${JSON.stringify(created.body)}`);
    const now = new Date().toISOString();
    const status = {
      status: {
        capacity: resources, allocatable: resources,
        conditions: [{ type: 'Ready', status: 'True', reason: 'KubeletReady', message: 'registered by the k8s-tests', lastHeartbeatTime: now, lastTransitionTime: now }],
        nodeInfo: { architecture: 'amd64', operatingSystem: 'linux', kubeletVersion: 'v1.34.0', containerRuntimeVersion: 'none', kernelVersion: '', osImage: '', kubeProxyVersion: '', machineID: '', systemUUID: '', bootID: '' },
      },
    };
    const r = await kube.request('PATCH', `/api/v1/nodes/${name}/status`, status, 'application/merge-patch+json');
    if (r.status !== 200) throw new Error(`node ${name} status: ${r.status} ${JSON.stringify(r.body)}`);
    // The API server's TaintNodesByCondition admission taints every new node not-ready; a kubelet
    // would report Ready and the lifecycle controller lift it. Neither runs here, so we lift it.
    const t = await kube.request('PATCH', `/api/v1/nodes/${name}`, { spec: { taints: null } }, 'application/merge-patch+json');
    if (t.status !== 200) throw new Error(`node ${name} taints: ${t.status} ${JSON.stringify(t.body)}`);
  }
  return names;
}

export async function removeNodePool(kube: Kube, preset: Preset): Promise<void> {
  for (const n of await kube.list<KubeObject>(`/api/v1/nodes?labelSelector=${encodeURIComponent(`${TEST_LABEL}=${preset.name}`)}`)) {
    await kube.delete(`/api/v1/nodes/${n.metadata.name}`);
  }
}

/** A pre-bound hostPath PersistentVolume for every claim the StatefulSets will make. */
export async function provideVolumes(kube: Kube, manifests: readonly Manifest[]): Promise<number> {
  let n = 0;
  for (const m of manifests.filter((x) => x.kind === 'StatefulSet')) {
    const spec = m['spec'] as { replicas?: number; volumeClaimTemplates?: { metadata: { name: string }; spec: { accessModes: string[]; resources: { requests: { storage: string } } } }[] };
    for (const t of spec.volumeClaimTemplates ?? []) {
      for (let i = 0; i < (spec.replicas ?? 1); i++) {
        const claim = `${t.metadata.name}-${m.metadata.name}-${i}`;
        const name = `pv-${m.metadata.namespace}-${claim}`;
        const pv = {
          apiVersion: 'v1', kind: 'PersistentVolume',
          metadata: { name, labels: { [TEST_LABEL]: String(m.metadata.namespace) } },
          spec: {
            capacity: { storage: t.spec.resources.requests.storage },
            accessModes: t.spec.accessModes,
            persistentVolumeReclaimPolicy: 'Delete',
            hostPath: { path: `/tmp/wa-k8s-tests/${name}` },
            claimRef: { namespace: m.metadata.namespace, name: claim },
          },
        };
        const r = await kube.request('POST', '/api/v1/persistentvolumes', pv);
        if (r.status !== 201 && r.status !== 409) throw new Error(`pv ${name}: ${r.status} ${JSON.stringify(r.body)}`);
        n++;
      }
    }
  }
  return n;
}

export interface PodView {
  name: string;
  nodeName?: string;
  phase: string;
  unschedulable?: string;
}

export async function podsOf(kube: Kube, namespace: string): Promise<PodView[]> {
  const pods = await kube.list<KubeObject & { spec: { nodeName?: string }; status: { phase: string; conditions?: { type: string; status: string; reason?: string; message?: string }[] } }>(`/api/v1/namespaces/${namespace}/pods`);
  return pods.map((p) => {
    const sched = p.status.conditions?.find((c) => c.type === 'PodScheduled' && c.status === 'False' && c.reason === 'Unschedulable');
    return { name: p.metadata.name, nodeName: p.spec.nodeName, phase: p.status.phase, unschedulable: sched?.message };
  });
}

/** Removes a namespace and everything in it, force-deleting pods no kubelet will ever stop. */
export async function deleteNamespace(kube: Kube, namespace: string, timeoutMs = 120_000): Promise<void> {
  await kube.delete(`/api/v1/namespaces/${namespace}`);
  await eventually(`namespace ${namespace} to be gone`, async () => {
    for (const p of await kube.list<KubeObject>(`/api/v1/namespaces/${namespace}/pods`).catch(() => [])) {
      await kube.delete(`/api/v1/namespaces/${namespace}/pods/${p.metadata.name}`, 0);
    }
    return (await kube.get(`/api/v1/namespaces/${namespace}`)) === undefined;
  }, timeoutMs, 1_000);
  for (const pv of await kube.list<KubeObject>(`/api/v1/persistentvolumes?labelSelector=${encodeURIComponent(`${TEST_LABEL}=${namespace}`)}`)) {
    await kube.delete(`/api/v1/persistentvolumes/${pv.metadata.name}`);
  }
}

/**
 * The Prometheus Operator's ServiceMonitor and PrometheusRule CRDs, as the operator publishes them
 * (scripts/prometheus/operator-crds.sh), installed and established: the API server then checks our
 * objects against the operator's own schemas.
 */
export async function installMonitoringCrds(kube: Kube): Promise<void> {
  const script = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../scripts/prometheus/operator-crds.sh');
  const files = execFileSync(script, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] }).trim().split('\n');
  const crds = files.map((f) => parse(fs.readFileSync(f, 'utf8')) as KubeObject);
  for (const crd of crds) {
    const r = await kube.apply(crd, { force: true });
    if (r.status >= 300) throw new Error(`installing CRD ${crd.metadata.name} failed: ${r.status} ${JSON.stringify(r.body)}`);
  }
  await eventually('monitoring CRDs established', async () => {
    for (const crd of crds) {
      const c = await kube.get<KubeObject & { status?: { conditions?: { type: string; status: string }[] } }>(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd.metadata.name}`);
      if (!c?.status?.conditions?.some((x) => x.type === 'Established' && x.status === 'True')) return false;
    }
    return true;
  });
}
