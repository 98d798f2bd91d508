// The inbox benchmark's dataset: 100,000 conversations and 5,000,000 messages, written with
// COPY straight into Postgres (the webhook path would take hours and is measured elsewhere).
// Built once into a stopped Postgres data directory under the cache root, outside the clone
// ($WA_ROUTER_CACHE, default ~/.cache/wa-router), keyed by a hash of the migrations and of this
// generator and of the Postgres version (a data directory opens only in its major version); a run
// copies that directory and starts Postgres on the copy, so the cache stays pristine. A change to the
// migrations, the generator or the Postgres version builds a new one.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import pg from 'pg';
import { from as copyFrom } from 'pg-copy-streams';
import { startPostgres, type PostgresHandle } from '../../scripts/stack/postgres.js';
import { freePort } from '../../scripts/stack/proc.js';
import { localTuning } from '../../scripts/stack/tuning.js';
import { versions } from '../../scripts/stack/servers.js';
import { ROOT, PHONE_NUMBER_ID, runRole, type BenchStack } from './stack.js';

/** Bumped whenever the generator below changes what it writes. */
const GENERATOR_VERSION = 4;
export const DATASET = { conversations: 100_000, messages: 5_000_000, bigConversation: 10_000 } as const;
/** Not a secret: a throwaway cluster on loopback, its password kept next to it in the cache. */
const PASSWORD = 'bench-inbox';

export interface InboxDataset {
  readonly postgres: PostgresHandle;
  /** The conversation holding 10,000 messages. */
  readonly bigConversationId: number;
  /** Seconds spent building the cache (0 when it was there) and starting from it. */
  readonly buildSeconds: number;
  readonly startSeconds: number;
  readonly cacheDir: string;
}

const cacheRoot = () => process.env.WA_ROUTER_CACHE ?? path.join(process.env.XDG_CACHE_HOME ?? path.join(os.homedir(), '.cache'), 'wa-router');

function schemaHash(): string {
  const dir = path.join(ROOT, 'service', 'src', 'store', 'migrations');
  const h = createHash('sha256').update(`generator ${GENERATOR_VERSION} ${JSON.stringify(DATASET)} postgres ${versions.postgres.series}\n`);
  for (const f of fs.readdirSync(dir).filter((f) => f.endsWith('.sql')).sort()) h.update(f).update(fs.readFileSync(path.join(dir, f)));
  return h.digest('hex').slice(0, 16);
}

/** A deterministic PRNG (mulberry32): the same dataset on every machine. */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const FIRST = ['Ana', 'Maria', 'João', 'José', 'Pedro', 'Lucas', 'Mariana', 'Juliana', 'Carlos', 'Paulo', 'Fernanda', 'Gabriel', 'Rafael', 'Camila', 'Bruno', 'Larissa', 'Diego', 'Sofia', 'Miguel', 'Laura', 'Tiago', 'Beatriz', 'Rodrigo', 'Patrícia', 'Daniel', 'Aline', 'Marcos', 'Vanessa', 'Felipe', 'Renata', 'John', 'Emma', 'Olivia', 'Liam', 'Noah', 'Ava', 'Carmen', 'Luis', 'Valentina', 'Mateo'];
const LAST = ['Silva', 'Santos', 'Oliveira', 'Souza', 'Rodrigues', 'Ferreira', 'Alves', 'Pereira', 'Lima', 'Gomes', 'Costa', 'Ribeiro', 'Martins', 'Carvalho', 'Almeida', 'Lopes', 'Soares', 'Fernandes', 'Vieira', 'Barbosa', 'Rocha', 'Dias', 'Nascimento', 'Andrade', 'Moreira', 'Nunes', 'Marques', 'Machado', 'Mendes', 'Freitas', 'García', 'Martínez', 'Smith', 'Johnson'];
const INBOUND = ['Oi, meu pedido chegou?', 'Bom dia! Qual o prazo de entrega?', 'Quero trocar o tamanho', 'Vocês abrem no sábado?', 'Obrigado!', 'Qual o valor do frete para 01310-100?', 'Ainda não recebi o código de rastreio', 'Pode me mandar o boleto de novo?', 'Hi, is this still available?', 'ok', 'Perfeito 👍', 'Tem na cor azul?'];
const OUTBOUND = ['Olá! Seu pedido saiu para entrega hoje.', 'Bom dia, o prazo é de 3 a 5 dias úteis.', 'Claro, segue o link para a troca.', 'Abrimos sábado das 9h às 13h.', 'Por nada, estamos à disposição!', 'O frete fica R$ 18,90.', 'Segue o código: BR123456789', 'Enviado novamente, confira seu e-mail.', 'Yes, it is! Want me to reserve it?', 'Temos sim, em todos os tamanhos.'];

const ts = (ms: number) => new Date(ms).toISOString();

/** Message counts per conversation: conversation 1 holds 10,000, the rest a skewed (lognormal) share of what remains. */
function messageCounts(rand: () => number): Int32Array {
  const n = DATASET.conversations;
  const counts = new Int32Array(n);
  const weights = new Float64Array(n);
  let sum = 0;
  for (let i = 1; i < n; i++) {
    // Box–Muller; sigma 1.2 gives a long tail: most chats are short, a few hundred run long.
    const z = Math.sqrt(-2 * Math.log(1 - rand())) * Math.cos(2 * Math.PI * rand());
    weights[i] = Math.exp(1.2 * z);
    sum += weights[i]!;
  }
  const rest = DATASET.messages - DATASET.bigConversation;
  counts[0] = DATASET.bigConversation;
  let given = 0;
  for (let i = 1; i < n; i++) {
    counts[i] = Math.max(1, Math.floor((weights[i]! / sum) * rest));
    given += counts[i]!;
  }
  // Rounding leaves a remainder (or an excess): spread it one message at a time.
  for (let i = 1; given !== rest; i = (i % (n - 1)) + 1) {
    if (given < rest) {
      counts[i]!++;
      given++;
    } else if (counts[i]! > 1) {
      counts[i]!--;
      given--;
    }
  }
  return counts;
}

/** Lines of COPY text, batched so the stream does not pay per row. */
function lines(gen: () => Generator<string>): Readable {
  return Readable.from((function* () {
    let batch: string[] = [];
    for (const line of gen()) {
      batch.push(line);
      if (batch.length === 2000) {
        yield batch.join('');
        batch = [];
      }
    }
    if (batch.length) yield batch.join('');
  })());
}

async function copy(client: pg.Client, sql: string, gen: () => Generator<string>): Promise<void> {
  await pipeline(lines(gen), client.query(copyFrom(sql)));
}

/** COPY assigns identity ids in row order from 1 in a fresh table; the rows below rely on that, so it is checked. */
async function expectIds(client: pg.Client, table: string, n: number): Promise<void> {
  const { rows } = await client.query<{ min: string; max: string; count: string }>(`SELECT min(id), max(id), count(*) FROM ${table}`);
  const r = rows[0]!;
  if (Number(r.min) !== 1 || Number(r.max) !== n || Number(r.count) !== n) throw new Error(`${table}: ids ${r.min}..${r.max} for ${r.count} rows, expected 1..${n}`);
}

async function generate(client: pg.Client, log: (s: string) => void): Promise<void> {
  const rand = rng(17);
  const n = DATASET.conversations;
  const now = Date.now();
  // Foreign keys are triggers: off for this session, the generator writes consistent rows.
  await client.query("SET session_replication_role = replica; SET maintenance_work_mem = '512MB'");
  // The first number is the one the service is configured with (migrate has stored it already).
  const { rows: channelRows } = await client.query<{ id: string }>(
    `INSERT INTO channels (phone_number_id, display_phone_number, name) VALUES ($1, '15550783881', 'Loja Centro'), ('206540352242922', '15550783882', 'Loja Norte')
     ON CONFLICT (phone_number_id) DO UPDATE SET name = EXCLUDED.name RETURNING id`,
    [PHONE_NUMBER_ID],
  );
  const [mainChannel, otherChannel] = channelRows.map((r) => r.id);
  const channelOf = (conv: number) => (conv % 10 === 0 ? otherChannel : mainChannel);

  await copy(client, 'COPY contacts (wa_id, profile_name, user_id, username, created_at, updated_at) FROM STDIN', function* () {
    for (let i = 1; i <= n; i++) {
      const named = rand() > 0.05;
      const name = named ? `${FIRST[Math.floor(rand() * FIRST.length)]} ${LAST[Math.floor(rand() * LAST.length)]}` : '\\N';
      const bsuid = rand() < 0.03;
      const created = ts(now - 400 * 86_400_000 + i * 300_000);
      yield `55${11 + (i % 89)}9${String(10_000_000 + i * 7919 % 90_000_000).padStart(8, '0')}\t${name}\t${bsuid ? `BR.${i.toString(36).toUpperCase()}` : '\\N'}\t${bsuid ? `user_${i}` : '\\N'}\t${created}\t${created}\n`;
    }
  });
  await expectIds(client, 'contacts', n);
  log('contacts copied');

  const counts = messageCounts(rand);
  const lastAt = new Float64Array(n);
  const lastId = new Float64Array(n);
  const lastAgentId = new Float64Array(n);
  const lastInboundAt = new Float64Array(n);
  const unread = new Int32Array(n);
  // Messages go in conversation by conversation (as a history import writes them); the timeline
  // index is rebuilt after the load instead of being maintained row by row.
  const { rows: secondary } = await client.query<{ indexname: string; indexdef: string }>(
    `SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'messages'
       AND indexname NOT IN (SELECT conname FROM pg_constraint WHERE conrelid = 'messages'::regclass)`,
  );
  for (const i of secondary) await client.query(`DROP INDEX ${i.indexname}`);
  let id = 0;
  await copy(client, 'COPY messages (wamid, channel_id, conversation_id, contact_id, direction, source, type, body, raw, wa_timestamp, status, status_rank, sent_at, created_at, updated_at) FROM STDIN', function* () {
    for (let c = 0; c < n; c++) {
      const k = counts[c]!;
      const conv = c + 1;
      // Recent activity is denser: ages are exponential, mean 20 days.
      const end = now - Math.floor(-Math.log(1 - rand()) * 20 * 86_400_000);
      const gap = Math.max(5_000, Math.min(3_600_000, (170 * 86_400_000) / k));
      const trailingInbound = rand() < 0.12 ? Math.min(k, 1 + Math.floor(rand() * 4)) : 0;
      const channel = channelOf(conv);
      let t = end - k * gap;
      for (let j = 0; j < k; j++) {
        id++;
        t += Math.floor(gap * (0.2 + rand() * 1.6));
        if (j === k - 1) t = end;
        const inbound = j >= k - trailingInbound || (j !== k - 1 - trailingInbound && rand() < 0.55);
        const wamid = `wamid.HBgNBENCH${id.toString(36).toUpperCase().padStart(8, '0')}`;
        const texts = inbound ? INBOUND : OUTBOUND;
        const body = texts[Math.floor(rand() * texts.length)]!;
        const at = ts(t);
        const raw = inbound
          ? `{"from":"c${conv}","id":"${wamid}","timestamp":"${Math.floor(t / 1000)}","type":"text","text":{"body":"${body}"}}`
          : `{"messaging_product":"whatsapp","to":"c${conv}","type":"text","text":{"body":"${body}"}}`;
        const status = inbound ? 'received\t0' : t > now - 86_400_000 ? 'delivered\t2' : 'read\t3';
        yield `${wamid}\t${channel}\t${conv}\t${conv}\t${inbound ? 'inbound' : 'outbound'}\t${inbound ? 'live' : 'api'}\ttext\t${body}\t${raw}\t${at}\t${status}\t${inbound ? '\\N' : at}\t${at}\t${at}\n`;
        if (inbound) lastInboundAt[c] = t;
        else lastAgentId[c] = id;
      }
      lastAt[c] = end;
      lastId[c] = id;
      unread[c] = trailingInbound;
    }
  });
  await expectIds(client, 'messages', DATASET.messages);
  log('messages copied');
  for (const i of secondary) await client.query(i.indexdef);
  log('message indexes rebuilt');

  // Conversations with their triggers on (and foreign keys checked: 100,000 rows, seconds): each
  // copies its contact's searched text as the service's writes do (026).
  await client.query('SET session_replication_role = DEFAULT');
  await copy(client, 'COPY conversations (channel_id, contact_id, last_message_at, last_message_id, last_inbound_at, last_agent_message_id, unread_count, created_at, updated_at) FROM STDIN', function* () {
    for (let c = 0; c < n; c++) {
      const conv = c + 1;
      const opt = (v: number, f: (v: number) => string) => (v ? f(v) : '\\N');
      yield `${channelOf(conv)}\t${conv}\t${ts(lastAt[c]!)}\t${lastId[c]}\t${opt(lastInboundAt[c]!, ts)}\t${opt(lastAgentId[c]!, String)}\t${unread[c]}\t${ts(lastAt[c]! - counts[c]! * 60_000)}\t${ts(lastAt[c]!)}\n`;
    }
  });
  await expectIds(client, 'conversations', n);
  // Frozen and analyzed: the steady state of a database that has been running a while.
  await client.query('VACUUM (FREEZE, ANALYZE)');
  // The load's WAL (gigabytes) is of no use to a copy: a checkpoint under small WAL limits (and no
  // WAL kept for replicas) removes it.
  await client.query("ALTER SYSTEM SET max_wal_size = '64MB'");
  await client.query("ALTER SYSTEM SET min_wal_size = '32MB'");
  await client.query('ALTER SYSTEM SET wal_keep_size = 0');
  await client.query('SELECT pg_reload_conf()');
  await client.query('CHECKPOINT');
  await client.query('SELECT pg_switch_wal()');
  await client.query('CHECKPOINT');
  log('conversations copied, vacuumed');
}

async function build(dir: string, stack: BenchStack, log: (s: string) => void): Promise<void> {
  // Built where the postgres user can reach it (the cache may sit in a home it cannot enter).
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-router-inbox-build-'));
  fs.chmodSync(work, 0o755);
  const tuning = await localTuning();
  try {
    // fsync off while building only: the directory is kept after a clean shutdown, which writes everything.
    const postgres = await startPostgres({ dir: work, port: await freePort(), password: PASSWORD, conf: tuning.postgres, ephemeral: true });
    try {
      await runRole('migrate', stack.serviceEnv({ DATABASE_URL: postgres.url }));
      const client = new pg.Client({ connectionString: postgres.url });
      await client.connect();
      try {
        await generate(client, log);
      } finally {
        await client.end();
      }
    } finally {
      await postgres.stop();
    }
    // Only the data directory is kept; sockets and logs belong to a run.
    fs.mkdirSync(dir, { recursive: true });
    execFileSync('mv', [path.join(work, 'data'), path.join(dir, 'data')]);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
  fs.writeFileSync(path.join(dir, 'dataset.json'), JSON.stringify({ ...DATASET, builtAt: new Date().toISOString() }) + '\n');
}

/**
 * Postgres on a copy of the cached dataset (built first when missing), in `runDir`. Caches of
 * other schema versions are removed when a new one is built: each is a few gigabytes.
 */
export async function startInboxDataset(stack: BenchStack, runDir: string, log: (s: string) => void): Promise<InboxDataset> {
  const root = cacheRoot();
  const cacheDir = path.join(root, `bench-inbox-${schemaHash()}`);
  let buildSeconds = 0;
  if (!fs.existsSync(path.join(cacheDir, 'dataset.json'))) {
    const t0 = performance.now();
    log(`building the dataset in ${cacheDir} (once per schema)`);
    fs.mkdirSync(root, { recursive: true });
    for (const old of fs.readdirSync(root).filter((d) => d.startsWith('bench-inbox-'))) fs.rmSync(path.join(root, old), { recursive: true, force: true });
    await build(cacheDir, stack, log);
    buildSeconds = (performance.now() - t0) / 1000;
  }
  const t0 = performance.now();
  fs.mkdirSync(runDir, { recursive: true });
  execFileSync('cp', ['-a', '--reflink=auto', path.join(cacheDir, 'data'), path.join(runDir, 'data')]);
  const tuning = await localTuning();
  const postgres = await startPostgres({ dir: runDir, port: await freePort(), password: PASSWORD, conf: tuning.postgres });
  // A no-op on a current cache; keeps the run honest if a migration landed between hash and start.
  await runRole('migrate', stack.serviceEnv({ DATABASE_URL: postgres.url }));
  return { postgres, bigConversationId: 1, buildSeconds, startSeconds: (performance.now() - t0) / 1000, cacheDir };
}
