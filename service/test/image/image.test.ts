// The image as a cluster runs it: built by `make image` (scripts/image/build.sh), then `migrate`,
// `web` and `worker` from it as its non-root user with a read-only root filesystem and only /tmp
// writable, against the test Postgres and Redis on loopback (host network). A machine that cannot
// run containers still builds the image; only the run is skipped, saying why.
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { freePort } from '../../../scripts/stack/proc.js';
import { eventually, postWebhook } from '../helpers/app.js';
import { createTestDb, PHONE_NUMBER_ID, testEnv, type TestDb } from '../helpers/context.js';

const exec = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../..', import.meta.url));
const IMAGE = 'localhost/wa-router:test';
const MAX_BYTES = 250 * 1000 * 1000;
const engine = spawnSync('docker', ['info'], { stdio: 'ignore' }).status === 0 ? 'docker' : 'podman';
const engineEnv = { ...process.env, STORAGE_DRIVER: process.env.STORAGE_DRIVER ?? 'vfs' };
const run = async (...args: string[]) => (await exec(engine, args, { env: engineEnv, maxBuffer: 16 << 20 })).stdout.trim();
const ulimits = spawnSync(`${ROOT}/scripts/image/ulimits.sh`).stdout.toString().trim().split(' ');
const names: string[] = [];
let db: TestDb;
let cannotRun: string | undefined;

beforeAll(async () => {
  db = await createTestDb({ empty: true });
  const t0 = Date.now();
  const built = await exec(`${ROOT}/scripts/image/build.sh`, [], {
    cwd: ROOT,
    env: { ...engineEnv, IMAGE, CONTAINER_ENGINE: engine },
    maxBuffer: 64 << 20,
  }).catch((err: { stderr?: string; message: string }) => {
    throw new Error(`make image failed: ${err.message}\n${(err.stderr ?? '').slice(-4000)}`);
  });
  console.log(`image: ${engine}, ${/up to date/.test(built.stderr) ? 'unchanged tree, not rebuilt' : 'built'} in ${((Date.now() - t0) / 1000).toFixed(0)} s`);
  // Whether this machine runs containers at all is asked of the base image: a wa-router image that
  // cannot start must fail the tests below, not pass as "cannot run containers here".
  const base = engine === 'docker' ? 'node:24-bookworm-slim' : (await exec(`${ROOT}/scripts/image/base.sh`, [], { cwd: ROOT, env: engineEnv })).stdout.trim();
  try {
    await run('run', '--rm', '--network', 'host', ...ulimits, '--entrypoint', 'node', base, '-e', '0');
  } catch (err) {
    cannotRun = `${engine} cannot run containers on this machine (base image ${base}): ${String((err as Error).message).split('\n').slice(0, 3).join(' ')}`;
  }
}, 45 * 60_000);

afterAll(async () => {
  for (const name of names) await run('rm', '-f', name).catch(() => undefined);
  await db?.drop();
});

it('is small and holds production dependencies only, no compilers', async () => {
  const [size, user] = (await run('image', 'inspect', '--format', '{{.Size}} {{.Config.User}}', IMAGE)).split(' ');
  console.log(`image: ${(Number(size) / 1e6).toFixed(0)} MB uncompressed (target ${MAX_BYTES / 1e6} MB)`);
  expect(user).toBe('node');
  expect(Number(size)).toBeLessThanOrEqual(MAX_BYTES);
  if (cannotRun) return;
  const listing = await run('run', '--rm', '--network', 'host', ...ulimits, '--entrypoint', 'sh', IMAGE, '-c',
    'ls node_modules; ls service/dist | head -50; for c in gcc cc g++ make python3 tsc; do command -v $c; done; true');
  const entries = listing.split('\n');
  for (const dev of ['typescript', 'vitest', 'eslint', 'tsx', 'standardwebhooks', '@types', 'cdk8s', 'cdk8s-cli']) expect(entries).not.toContain(dev);
  for (const prod of ['bullmq', 'express', 'pg', 'ioredis', 'main.js']) expect(entries).toContain(prod);
  expect(entries.filter((e) => e.startsWith('/'))).toEqual([]);
}, 2 * 60_000);

it('migrates, serves /readyz and stores a signed webhook as the non-root user on a read-only root', async (ctx) => {
  if (cannotRun) ctx.skip(cannotRun);
  const port = await freePort();
  const env = testEnv(db, { NODE_ENV: 'production', LOG_LEVEL: 'info', HOST: '127.0.0.1' });
  const id = randomBytes(4).toString('hex');
  // Host network: each process needs a port of its own (the worker serves /healthz and /metrics).
  const runArgs = (name: string, port: number) => [
    '--name', name, '--network', 'host', '--read-only', ...(engine === 'podman' ? ['--read-only-tmpfs=false'] : []),
    '--tmpfs', '/tmp:rw,size=64m', ...ulimits, '--stop-timeout', '10',
    ...Object.entries({ ...env, PORT: String(port) }).flatMap(([k, v]) => ['-e', `${k}=${v}`]),
  ];
  const logs = async () => (await Promise.all(names.map(async (n) => `--- ${n}\n${await run('logs', '--tail', '40', n).catch((e: Error) => e.message)}`))).join('\n');

  names.push(`wa-router-${id}-migrate`);
  await run('run', ...runArgs(names.at(-1)!, port), IMAGE, 'migrate');
  expect(await run('inspect', '--format', '{{.State.ExitCode}}', names.at(-1)!)).toBe('0');
  expect(Number((await db.pool.query('SELECT count(*) AS n FROM information_schema.tables WHERE table_name = $1', ['messages'])).rows[0].n)).toBe(1);

  for (const role of ['web', 'worker']) {
    names.push(`wa-router-${id}-${role}`);
    await run('run', '-d', ...runArgs(names.at(-1)!, role === 'web' ? port : await freePort()), IMAGE, role);
  }
  const web = `http://127.0.0.1:${port}`;
  await eventually(async () => (await fetch(`${web}/readyz`)).status === 200, { timeoutMs: 60_000, intervalMs: 250, what: '/readyz' }).catch(async (e: Error) => {
    throw new Error(`${e.message}\n${await logs()}`);
  });

  const webName = names.at(-2)!;
  expect(await run('exec', webName, 'id', '-u')).toBe('1000');
  await expect(run('exec', webName, 'sh', '-c', 'touch /home/node/written')).rejects.toThrow(/Read-only file system/);
  expect(await run('exec', webName, 'sh', '-c', 'touch /tmp/written && echo ok')).toBe('ok');

  const wamid = `wamid.IMAGE${id}`;
  const body = JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '1', changes: [{ field: 'messages', value: { messaging_product: 'whatsapp', metadata: { display_phone_number: '1', phone_number_id: PHONE_NUMBER_ID }, contacts: [{ profile: { name: 'Image' }, wa_id: '16505551234' }], messages: [{ from: '16505551234', id: wamid, timestamp: '1760000000', type: 'text', text: { body: 'from the image' } }] } }] }],
  });
  expect((await postWebhook(web, body)).status).toBe(200);
  expect((await postWebhook(web, body, { secret: 'not-the-app-secret' })).status).toBe(401);
  const row = await eventually(async () => (await db.pool.query('SELECT body FROM messages WHERE wamid = $1', [wamid])).rows[0] as { body: string } | undefined, {
    timeoutMs: 60_000,
    intervalMs: 250,
    what: 'the webhook stored by the worker container',
  }).catch(async (e: Error) => {
    throw new Error(`${e.message}\n${await logs()}`);
  });
  expect(row.body).toBe('from the image');
}, 5 * 60_000);
