// The local control plane runs the Kubernetes and etcd versions.json declares (etcd 3.5+, which the
// API server supports fully; Debian bookworm's 3.4 lacked RequestWatchProgress).
import { describe, expect, inject, it } from 'vitest';
import versions from '../../versions.json' with { type: 'json' };

describe.runIf(inject('localControlPlane'))('the local control plane', () => {
  it('is the declared Kubernetes, storing in the declared etcd', () => {
    expect(inject('k8sVersion')).toBe(`k8s-${versions.kubernetes.version}`);
    expect(inject('etcdVersion')).toBe(versions.etcd.version);
  });
});
