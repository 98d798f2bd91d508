// Starts the local control plane (built once from the Go module proxy, cached in ~/.cache/wa-router), or
// uses the cluster of the kubeconfig file named by K8S_TESTS_KUBECONFIG. An explicit variable, not
// KUBECONFIG itself: that one often points at a real cluster, and the suite creates namespaces.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { TestProject } from 'vitest/node';
import { installMonitoringCrds } from '../src/cluster.js';
import { startControlPlane, type ControlPlane } from '../src/controlplane.js';
import { Kube } from '../src/kube.js';

declare module 'vitest' {
  export interface ProvidedContext {
    kubeconfig: string;
    /** true: our own control plane (fake nodes may be registered); false: a real cluster. */
    localControlPlane: boolean;
    k8sVersion: string;
    /** The local control plane's etcd version; 'external' against a real cluster. */
    etcdVersion: string;
    /** The built binaries (kubectl among them); empty against an external cluster. */
    binDir: string;
  }
}

let cp: ControlPlane | undefined;
let dir: string | undefined;

export async function setup(project: TestProject): Promise<void> {
  const external = process.env['K8S_TESTS_KUBECONFIG'];
  if (external) {
    project.provide('kubeconfig', external);
    project.provide('localControlPlane', false);
    project.provide('k8sVersion', 'external');
    project.provide('etcdVersion', 'external');
    project.provide('binDir', '');
    return;
  }
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-k8s-'));
  cp = await startControlPlane(dir);
  // The charts carry ServiceMonitors and a PrometheusRule: a cluster with the Prometheus Operator.
  await installMonitoringCrds(new Kube(cp.kubeconfig));
  project.provide('kubeconfig', cp.kubeconfig);
  project.provide('localControlPlane', true);
  project.provide('k8sVersion', cp.version);
  project.provide('etcdVersion', cp.etcdVersion);
  project.provide('binDir', cp.binDir);
}

export async function teardown(): Promise<void> {
  await cp?.stop();
  if (dir && !process.env['K8S_TESTS_KEEP']) fs.rmSync(dir, { recursive: true, force: true });
}
