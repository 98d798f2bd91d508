// `make up`: Postgres and Redis on loopback (data in .data/), migrations, then the web and
// worker processes in the background. Prints the URLs and a signed sample webhook to paste.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { createHmac } from 'node:crypto';
import { startPostgres } from './stack/postgres.js';
import { startRedis } from './stack/redis.js';
import { isAlive, portOpen, spawnDaemon, stopPidFile, waitFor } from './stack/proc.js';
import { DATA, LOGS, PIDS, ROOT, localSettings, serviceEnv, writeEnvFile } from './stack/local.js';
import { localTuning } from './stack/tuning.js';
import { startHaStack, stopHaDir } from './stack/ha.js';
import { startS3 } from './stack/versitygw.js';

const MAIN = path.join(ROOT, 'service', 'dist', 'main.js');

function runningPid(name: string): number | undefined {
  const f = path.join(PIDS, `${name}.pid`);
  if (!fs.existsSync(f)) return undefined;
  const pid = Number(fs.readFileSync(f, 'utf8'));
  return pid > 0 && isAlive(pid) ? pid : undefined;
}

async function ensurePort(port: number, name: string, variable: string): Promise<void> {
  if (await portOpen(port)) throw new Error(`port ${port} for ${name} is taken by another program: free it or change ${variable} in .data/settings.json`);
}

/** `make up HA=1`: the production topology (scripts/stack/ha.ts) under .data/ha, nginx on the web port. */
async function mainHa(): Promise<void> {
  const s = localSettings();
  const dir = path.join(DATA, 'ha');
  await stopHaDir(dir);
  await ensurePort(s.webPort, 'nginx (the HA entry point)', 'PORT (or webPort in .data/settings.json)');
  const stack = await startHaStack({
    dir,
    lbPort: s.webPort,
    ackDurability: (process.env.ACK_DURABILITY as 'local' | 'replicated' | undefined) ?? 'replicated',
    secrets: { password: s.pgPassword, appSecret: s.appSecret, verifyToken: s.verifyToken, apiToken: s.apiToken, phoneNumberId: s.phoneNumberId, accessToken: s.accessToken },
    env: { LOG_LEVEL: 'info', ...(process.env.GRAPH_API_BASE_URL ? { GRAPH_API_BASE_URL: process.env.GRAPH_API_BASE_URL } : {}) },
  });
  const envFile = writeEnvFile({ ...stack.env, DATABASE_URL: stack.env.DATABASE_URL!, PORT: String(s.webPort) });
  const m = await stack.master();
  console.log(`
wa-router is up in HA mode (data, logs and pids in ${path.relative(process.cwd(), dir)}/).

  webhook  ${stack.url}/webhooks/whatsapp   (nginx least_conn over ${stack.webs.length} web processes)
  web      ${stack.webs.map((w) => `http://127.0.0.1:${w.port}`).join('  ')}
  worker   ${stack.workers.map((w) => `http://127.0.0.1:${w.port}/metrics`).join('  ')}
  redis    master 127.0.0.1:${m.port}, ${stack.redis.length - 1} replicas, Sentinels ${stack.env.REDIS_SENTINELS}
  postgres through PgBouncer ${stack.env.DATABASE_URL!.replace(/:[^:@/]+@/, ':***@')}
  acks     ACK_DURABILITY=${stack.env.ACK_DURABILITY}
  env      ${envFile}

Stop everything with: make down
`);
}


/** The media store of `make up`: the filesystem under .data/media, or with MEDIA=s3 an S3 server (Versity S3 Gateway) on loopback. */
async function mediaEnv(s: ReturnType<typeof localSettings>): Promise<{ env: Record<string, string>; line: string }> {
  const media = process.env.MEDIA ?? 'fs';
  const pidFile = path.join(PIDS, 's3.pid');
  if (media === 'fs') {
    await stopPidFile(pidFile);
    return { env: {}, line: `filesystem ${path.join(path.relative(process.cwd(), DATA) || '.data', 'media')}/ (MEDIA=s3 for an S3-compatible store)` };
  }
  if (media !== 's3') throw new Error(`MEDIA=${media}: use MEDIA=fs (the default) or MEDIA=s3`);
  // Restarted with the stack, on the same ports (objects stay in .data/s3).
  await stopPidFile(pidFile);
  await ensurePort(s.s3Port, 'the S3 server', 's3Port');
  console.log('Starting Versity S3 Gateway (built from the Go module proxy and cached the first time: a few minutes)...');
  const s3 = await startS3({ dir: path.join(DATA, 's3'), bucket: 'wa-router-media', accessKeyId: s.s3AccessKeyId, secretAccessKey: s.s3SecretAccessKey, port: s.s3Port, pidFile, logFile: path.join(LOGS, 's3.log') });
  return { env: s3.env, line: `S3 (Versity S3 Gateway) ${s3.endpoint}, bucket ${s3.bucket}` };
}

async function main(): Promise<void> {
  if (process.env.HA === '1') {
    if (process.env.MEDIA === 's3') throw new Error('MEDIA=s3 runs with the single-node stack; HA=1 keeps media on the filesystem');
    return mainHa();
  }
  fs.mkdirSync(LOGS, { recursive: true });
  fs.mkdirSync(PIDS, { recursive: true });
  const s = localSettings();
  const tuning = await localTuning();

  let pgUrl = `postgres://wa_router:${encodeURIComponent(s.pgPassword)}@127.0.0.1:${s.pgPort}/wa_router`;
  if (!runningPid('postgres')) {
    await ensurePort(s.pgPort, 'Postgres', 'pgPort');
    const pg = await startPostgres({ dir: path.join(DATA, 'postgres'), port: s.pgPort, password: s.pgPassword, conf: tuning.postgres });
    fs.writeFileSync(path.join(PIDS, 'postgres.pid'), String(pg.pid));
    pgUrl = pg.url;
  }
  let redisUrl = `redis://:${encodeURIComponent(s.redisPassword)}@127.0.0.1:${s.redisPort}`;
  if (!runningPid('redis')) {
    await ensurePort(s.redisPort, 'Redis', 'redisPort');
    const redis = await startRedis({ dir: path.join(DATA, 'redis'), port: s.redisPort, password: s.redisPassword, conf: tuning.redis, maxmemory: tuning.redisMaxmemory });
    fs.writeFileSync(path.join(PIDS, 'redis.pid'), String(redis.pid));
    redisUrl = redis.url;
  }

  const media = await mediaEnv(s);
  const env = { ...serviceEnv(s, pgUrl, redisUrl), ...media.env };
  // Without a real Graph API configured, sends go to the simulator (answers like Meta and
  // sends the status webhooks back to the web process).
  let simulatorUrl: string | undefined;
  if (!process.env.GRAPH_API_BASE_URL) {
    await stopPidFile(path.join(PIDS, 'simulator.pid'));
    await ensurePort(s.simulatorPort, 'the Graph API simulator', 'simulatorPort');
    const sim = spawnDaemon(process.execPath, ['--import', 'tsx', path.join(ROOT, 'scripts', 'graph-sim', 'main.ts'), '--port', String(s.simulatorPort), '--webhook', `http://127.0.0.1:${env.PORT}/webhooks/whatsapp`, '--app-secret', env.WHATSAPP_APP_SECRET!, '--token', `${env.WHATSAPP_PHONE_NUMBER_ID}=${env.WHATSAPP_ACCESS_TOKEN}`], { cwd: ROOT, logFile: path.join(LOGS, 'simulator.log'), pidFile: path.join(PIDS, 'simulator.pid') });
    simulatorUrl = `http://127.0.0.1:${s.simulatorPort}`;
    await waitFor('Graph API simulator', () => portOpen(s.simulatorPort), { pid: sim.pid, logFile: sim.logFile });
    env.GRAPH_API_BASE_URL = simulatorUrl;
  }
  const envFile = writeEnvFile(env);
  const childEnv = { ...process.env, ...env };

  execFileSync(process.execPath, [MAIN, 'migrate'], { env: childEnv, stdio: 'inherit' });

  // A second `make up` restarts the service processes (new code) and keeps the data stores.
  await stopPidFile(path.join(PIDS, 'web.pid'));
  await stopPidFile(path.join(PIDS, 'worker.pid'));
  const webPort = Number(env.PORT);
  await ensurePort(webPort, 'the web process', 'PORT (or webPort in .data/settings.json)');
  const web = spawnDaemon(process.execPath, [MAIN, 'web'], { env: childEnv, logFile: path.join(LOGS, 'web.log'), pidFile: path.join(PIDS, 'web.pid') });
  const worker = spawnDaemon(process.execPath, [MAIN, 'worker'], { env: { ...childEnv, PORT: String(s.workerPort) }, logFile: path.join(LOGS, 'worker.log'), pidFile: path.join(PIDS, 'worker.pid') });
  const base = `http://127.0.0.1:${webPort}`;
  await waitFor('web /readyz', async () => (await fetch(`${base}/readyz`).catch(() => null))?.status === 200, { pid: web.pid, logFile: web.logFile, timeoutMs: 30_000 });
  await waitFor('worker /readyz', async () => (await fetch(`http://127.0.0.1:${s.workerPort}/readyz`).catch(() => null))?.status === 200, { pid: worker.pid, logFile: worker.logFile, timeoutMs: 30_000 });

  const wamid = `wamid.SAMPLE${Date.now()}`;
  const sample = JSON.stringify({
    object: 'whatsapp_business_account',
    entry: [{ id: '102290129340398', changes: [{ field: 'messages', value: {
      messaging_product: 'whatsapp',
      metadata: { display_phone_number: '15550783881', phone_number_id: env.WHATSAPP_PHONE_NUMBER_ID },
      contacts: [{ profile: { name: 'Sheena Nelson' }, wa_id: '16505551234' }],
      messages: [{ from: '16505551234', id: wamid, timestamp: String(Math.floor(Date.now() / 1000)), type: 'text', text: { body: 'Does it come in another color?' } }],
    } }] }],
  });
  const sampleFile = path.join(DATA, 'sample-webhook.json');
  fs.writeFileSync(sampleFile, sample);
  const sig = 'sha256=' + createHmac('sha256', env.WHATSAPP_APP_SECRET!).update(sample).digest('hex');
  const rel = path.relative(process.cwd(), sampleFile) || sampleFile;

  console.log(`
wa-router is up (data and logs in .data/).

  web      ${base}           (webhook: ${base}/webhooks/whatsapp)
  worker   http://127.0.0.1:${s.workerPort}/metrics
  health   ${base}/readyz     metrics ${base}/metrics
  queues   ${base}/admin/queues (Authorization: Bearer $API_TOKEN)
  postgres ${pgUrl.replace(/:[^:@/]+@/, ':***@')}
  media    ${media.line}
  graph    ${simulatorUrl ? `${simulatorUrl} (the Graph API simulator; set GRAPH_API_BASE_URL for Meta's)` : env.GRAPH_API_BASE_URL}
  env      ${envFile} (source it for the tokens)

Send a signed sample webhook:

  curl -sS -X POST ${base}/webhooks/whatsapp -H 'content-type: application/json' -H 'x-hub-signature-256: ${sig}' --data-binary @${rel}

Then see it stored:

  . .data/env && curl -sS -H "Authorization: Bearer $API_TOKEN" '${base}/v1/messages?wamid=${wamid}'
  . .data/env && psql "$DATABASE_URL" -c 'SELECT id, wamid, type, body, status FROM messages ORDER BY id DESC LIMIT 5'

Send a message (it goes to ${simulatorUrl ? 'the simulator, whose status webhooks come back' : 'the Graph API'}):

  . .data/env && curl -sS -X POST ${base}/v1/messages -H "Authorization: Bearer $API_TOKEN" -H 'content-type: application/json' -d '{"to":"16505551234","type":"text","text":{"body":"Hello from wa-router"}}'

The inbox, and its realtime events (another terminal):

  . .data/env && curl -sS -H "Authorization: Bearer $API_TOKEN" '${base}/v1/conversations?limit=20'
  . .data/env && curl -sN "${base}/v1/events?access_token=$API_TOKEN"

Stop everything with: make down
`);
}

main().catch((err: unknown) => {
  console.error(`make up failed: ${err instanceof Error ? err.message : String(err)}`);
  process.exit(1);
});
