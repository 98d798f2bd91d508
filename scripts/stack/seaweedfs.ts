// A real S3-compatible object store on loopback: SeaweedFS (`weed server -s3`), built from the Go
// module proxy by scripts/lib/seaweedfs.sh and cached. One master, volume, filer and S3 gateway in
// one process, every port chosen free, one access key, one bucket made before it is handed out.
// It can be stopped and started again on the same ports and data (an outage of the store).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort, LOOPBACK, portOpen, spawnDaemon, stopPid, waitFor } from './proc.js';

const BUILD = fileURLToPath(new URL('../lib/seaweedfs.sh', import.meta.url));

export interface S3Options {
  readonly dir: string;
  readonly bucket: string;
  /** @default generated */
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  /**
   * Its eight ports are this one and the seven after it; picked free when unset. A store started
   * again on the same data needs the same ports: its master keeps the cluster's peers by address.
   */
  readonly basePort?: number;
  /** Where its pid is written (a stack that outlives this process stops it by that). */
  readonly pidFile?: string;
  /** @default <dir>/weed.log */
  readonly logFile?: string;
}

export interface S3Handle {
  /** The S3 endpoint (path-style). */
  readonly endpoint: string;
  readonly bucket: string;
  readonly accessKeyId: string;
  readonly secretAccessKey: string;
  /** The environment of a wa-router using it. */
  readonly env: Record<string, string>;
  /** The server's process (its CPU is the store's share of a benchmark's cost). */
  readonly pid: number;
  stop(): Promise<void>;
  /** Starts it again after stop(), same ports and data. */
  start(): Promise<void>;
}

/** The `weed` binary, built once (minutes) and cached. */
export function weedBinary(): string {
  return execFileSync(BUILD, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], timeout: 60 * 60_000 }).trim();
}

export async function startS3(opts: S3Options): Promise<S3Handle> {
  const weed = weedBinary();
  const accessKeyId = opts.accessKeyId ?? `wa${Math.random().toString(36).slice(2, 12)}`;
  const secretAccessKey = opts.secretAccessKey ?? `s${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  fs.mkdirSync(path.join(opts.dir, 'data'), { recursive: true });
  const configFile = path.join(opts.dir, 's3.json');
  fs.writeFileSync(configFile, JSON.stringify({ identities: [{ name: 'wa-router', credentials: [{ accessKey: accessKeyId, secretKey: secretAccessKey }], actions: ['Admin', 'Read', 'Write', 'List', 'Tagging'] }] }));
  const ports: Record<string, number> = {};
  for (const [i, p] of ['master', 'master.grpc', 'volume', 'volume.grpc', 'filer', 'filer.grpc', 's3', 's3.grpc'].entries()) ports[p] = opts.basePort ? opts.basePort + i : await freePort();
  const args = [
    'server', `-ip=${LOOPBACK}`, `-ip.bind=${LOOPBACK}`, `-dir=${path.join(opts.dir, 'data')}`,
    `-master.port=${ports.master}`, `-master.port.grpc=${ports['master.grpc']}`, '-master.telemetry=false', '-master.volumeSizeLimitMB=256',
    `-volume.port=${ports.volume}`, `-volume.port.grpc=${ports['volume.grpc']}`, '-volume.max=0',
    '-filer', `-filer.port=${ports.filer}`, `-filer.port.grpc=${ports['filer.grpc']}`, `-filer.localSocket=${path.join(opts.dir, 'filer.sock')}`,
    '-s3', `-s3.port=${ports.s3}`, `-s3.port.grpc=${ports['s3.grpc']}`, '-s3.port.iceberg=0', '-s3.port.lance=0', `-s3.config=${configFile}`, `-s3.localSocket=${path.join(opts.dir, 's3.sock')}`,
  ];
  const endpoint = `http://${LOOPBACK}:${ports.s3}`;
  const logFile = opts.logFile ?? path.join(opts.dir, 'weed.log');
  let pid = 0;
  const start = async () => {
    pid = spawnDaemon(weed, args, { logFile, cwd: opts.dir, ...(opts.pidFile ? { pidFile: opts.pidFile } : {}) }).pid;
    await waitFor('seaweedfs s3', () => portOpen(ports.s3!), { pid, logFile, timeoutMs: 120_000 });
    // The gateway listens before the filer and volumes are ready: a bucket creation tells.
    const client = new S3Client({ endpoint, region: 'us-east-1', forcePathStyle: true, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 });
    await waitFor('seaweedfs bucket', async () => {
      try {
        await client.send(new CreateBucketCommand({ Bucket: opts.bucket }));
        return true;
      } catch (err) {
        return ['BucketAlreadyExists', 'BucketAlreadyOwnedByYou'].includes((err as Error).name);
      }
    }, { pid, logFile, timeoutMs: 120_000 });
    client.destroy();
  };
  await start();
  return {
    endpoint,
    bucket: opts.bucket,
    accessKeyId,
    secretAccessKey,
    env: { MEDIA_STORE: 's3', S3_ENDPOINT: endpoint, S3_BUCKET: opts.bucket, S3_REGION: 'us-east-1', S3_ACCESS_KEY_ID: accessKeyId, S3_SECRET_ACCESS_KEY: secretAccessKey, S3_FORCE_PATH_STYLE: 'true' },
    get pid() {
      return pid;
    },
    stop: () => stopPid(pid, 15_000, 'SIGTERM'),
    start,
  };
}
