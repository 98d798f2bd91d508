// Schema migrations as a Job named after the image and the configuration it runs with: a new image
// runs its migrations once; applying the same again is a no-op (a Job's template is immutable, so
// the name must change with it). A mutable tag (`:latest`) names no build: pin images by digest
// (`repo@sha256:…`), or `make deploy` re-runs the Job on every deploy (migrations are idempotent).
import { Construct } from 'constructs';
import { k8s } from 'cdk8s-plus-27';
import type { Resources } from '../presets.js';
import { configHash, containerSecurity, k8sResources, labels, nameOf, podSecurity, pullPolicy, SECRETS, tmpVolume } from './common.js';

export interface MigrationJobProps {
  readonly image: string;
  readonly configMap: string;
  readonly serviceAccount: string;
  readonly env: k8s.EnvVar[];
  readonly resources: Resources;
  /** Hash of the shared ConfigMap's data. */
  readonly configHash: string;
}

export class MigrationJob extends Construct {
  readonly jobName: string;

  constructor(scope: Construct, id: string, props: MigrationJobProps) {
    super(scope, id);
    this.jobName = `${nameOf('migrate')}-${configHash(props.image, props.configHash, props.env).slice(0, 8)}`;
    new k8s.KubeJob(this, 'job', {
      metadata: { name: this.jobName, labels: labels('migrate') },
      spec: {
        backoffLimit: 6,
        activeDeadlineSeconds: 900,
        // Gone a day after it finished; applying again then re-runs it, which is harmless (migrations are idempotent).
        ttlSecondsAfterFinished: 86_400,
        template: {
          metadata: { labels: labels('migrate') },
          spec: {
            restartPolicy: 'OnFailure',
            serviceAccountName: props.serviceAccount,
            automountServiceAccountToken: false,
            securityContext: podSecurity(1000),
            containers: [{
              name: 'migrate',
              image: props.image,
              imagePullPolicy: pullPolicy(props.image),
              args: ['migrate'],
              envFrom: [{ configMapRef: { name: props.configMap } }, { secretRef: { name: SECRETS.app } }],
              env: props.env,
              resources: k8sResources(props.resources),
              securityContext: containerSecurity,
              volumeMounts: [{ name: 'tmp', mountPath: '/tmp' }],
            }],
            volumes: [tmpVolume()],
          },
        },
      },
    });
  }
}
