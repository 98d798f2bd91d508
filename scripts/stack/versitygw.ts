// A real S3-compatible object store on loopback: Versity S3 Gateway (`versitygw posix`), a
// production S3 server keeping each bucket as a directory and each object as a file (its metadata
// in extended attributes), built from the Go module proxy by scripts/lib/versitygw.sh and cached.
// One process, one port chosen free, one root access key, one bucket made before it is handed out.
// It can be stopped and started again on the same port and data (an outage of the store).
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { CreateBucketCommand, S3Client } from '@aws-sdk/client-s3';
import { freePort, LOOPBACK, portOpen, spawnDaemon, stopPid, waitFor } from './proc.js';

const BUILD = fileURLToPath(new URL('../lib/versitygw.sh', import.meta.url));

export interface S3Options {
  readonly dir: string;
  readonly bucket: string;
  /** @default generated */
  readonly accessKeyId?: string;
  readonly secretAccessKey?: string;
  /** Picked free when unset. */
  readonly port?: number;
  /** Where its pid is written (a stack that outlives this process stops it by that). */
  readonly pidFile?: string;
  /** @default <dir>/versitygw.log */
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
  /** Starts it again after stop(), same port and data. */
  start(): Promise<void>;
}

/**
 * The `versitygw` binary, built once (minutes) and cached. Asynchronous: a caller's event loop
 * (a test worker's timers and sockets) keeps running through a cold build or another build's lock.
 */
export async function versitygwBinary(): Promise<string> {
  const build = promisify(execFile)(BUILD, { encoding: 'utf8', timeout: 60 * 60_000, maxBuffer: 64 * 2 ** 20 });
  // Its progress ("building, a few minutes") is shown as it comes, not after the build.
  build.child.stderr?.pipe(process.stderr, { end: false });
  return (await build).stdout.trim();
}

export async function startS3(opts: S3Options): Promise<S3Handle> {
  const binary = await versitygwBinary();
  const accessKeyId = opts.accessKeyId ?? `wa${Math.random().toString(36).slice(2, 12)}`;
  const secretAccessKey = opts.secretAccessKey ?? `s${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  const buckets = path.join(opts.dir, 'buckets');
  fs.mkdirSync(buckets, { recursive: true });
  const port = opts.port ?? await freePort();
  const region = 'us-east-1';
  // The keys by environment, not arguments: a command line is readable by every local user.
  const env = { ...process.env, ROOT_ACCESS_KEY_ID: accessKeyId, ROOT_SECRET_ACCESS_KEY: secretAccessKey };
  // Keep-alive is off unless asked for: every request would open a connection of its own, which
  // costs the SDK's client more CPU than the request itself.
  const args = ['--port', `${LOOPBACK}:${port}`, '--region', region, '--keep-alive', '--quiet', 'posix', buckets];
  const endpoint = `http://${LOOPBACK}:${port}`;
  const logFile = opts.logFile ?? path.join(opts.dir, 'versitygw.log');
  let pid = 0;
  const start = async () => {
    pid = spawnDaemon(binary, args, { logFile, cwd: opts.dir, env, ...(opts.pidFile ? { pidFile: opts.pidFile } : {}) }).pid;
    try {
      await waitFor('versitygw', () => portOpen(port), { pid, logFile, timeoutMs: 60_000 });
      await createBucket();
    } catch (err) {
      // No handle reaches the caller of a failed start: nobody else could stop this server.
      await stopPid(pid, 15_000, 'SIGTERM');
      throw err;
    }
  };
  const createBucket = async () => {
    const client = new S3Client({ endpoint, region, forcePathStyle: true, credentials: { accessKeyId, secretAccessKey }, maxAttempts: 1 });
    try {
      await client.send(new CreateBucketCommand({ Bucket: opts.bucket }));
    } catch (err) {
      if (!['BucketAlreadyExists', 'BucketAlreadyOwnedByYou'].includes((err as Error).name)) throw err;
    } finally {
      client.destroy();
    }
  };
  await start();
  return {
    endpoint,
    bucket: opts.bucket,
    accessKeyId,
    secretAccessKey,
    env: { MEDIA_STORE: 's3', S3_ENDPOINT: endpoint, S3_BUCKET: opts.bucket, S3_REGION: region, S3_ACCESS_KEY_ID: accessKeyId, S3_SECRET_ACCESS_KEY: secretAccessKey, S3_FORCE_PATH_STYLE: 'true' },
    get pid() {
      return pid;
    },
    stop: () => stopPid(pid, 15_000, 'SIGTERM'),
    start,
  };
}
