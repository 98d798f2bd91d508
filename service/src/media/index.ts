// The media feature: inbound media downloaded into object storage (fs or S3-compatible), served
// to agents and areas, and uploads for sending. app.ts wires what this exports.
import { createHmac } from 'node:crypto';
import { Queue } from 'bullmq';
import type { Redis } from 'ioredis';
import type client from 'prom-client';
import type { RequestHandler, Router } from 'express';
import type { Config } from '../config/env.js';
import type { Publish } from '../events/hub.js';
import type { Logger } from '../log.js';
import type { Metrics } from '../metrics/registry.js';
import type { Pool } from '../store/pool.js';
import type { MediaJobData } from './download.js';
import { GraphMediaClient } from './graph-media.js';
import { createMediaMetrics } from './metrics.js';
import { MediaRepo } from './repo.js';
import { mediaRoutes, signMediaPath } from './routes.js';
import { S3MediaStore } from './s3-store.js';
import { FsMediaStore, type MediaStore } from './store.js';
import { registerMediaLinks } from './links.js';
import { storedMediaOf, storedMediaSender } from './send-stored.js';
import { MEDIA_QUEUE, startMediaWorker } from './worker.js';

/**
 * How long a download of a paused channel (Meta refused its token) waits before it looks again,
 * as its sends do; saving a new token lifts the pause.
 * @defaultValue 10 s
 */
const TOKEN_PAUSE_MS = 10_000;

export interface MediaFeature {
  readonly queue: Queue<MediaJobData>;
  readonly store: MediaStore;
  /** A signed, expiring link to GET /v1/media/:messageId. */
  url(messageId: number): string;
  routes(auth: RequestHandler[]): Router;
  startWorker(jobs: Metrics['jobs']): void;
  /** For POST /v1/messages: our stored media a media `id` names, or null for Meta's id. */
  storedMedia(id: string, channelId: number, areaIds: readonly number[] | null): Promise<number | null>;
  /** For the senders: sends naming our stored media go out with a Meta id of the sending number. */
  wrapSend: ReturnType<typeof storedMediaSender>;
  stop(): Promise<void>;
}

export function createMediaStore(config: Config): MediaStore {
  if (config.MEDIA_STORE === 'fs') return new FsMediaStore(config.MEDIA_FS_DIR);
  return new S3MediaStore({
    bucket: config.S3_BUCKET!,
    region: config.S3_REGION,
    forcePathStyle: config.S3_FORCE_PATH_STYLE,
    timeoutMs: config.MEDIA_TIMEOUT_MS,
    ...(config.S3_ENDPOINT ? { endpoint: config.S3_ENDPOINT } : {}),
    ...(config.S3_ACCESS_KEY_ID ? { accessKeyId: config.S3_ACCESS_KEY_ID, secretAccessKey: config.S3_SECRET_ACCESS_KEY! } : {}),
  });
}

export function createMediaFeature(d: { config: Config; pool: Pool; redis: Redis; log: Logger; registry: client.Registry; publish: Publish }): MediaFeature {
  const { config } = d;
  const repo = new MediaRepo(d.pool);
  const store = createMediaStore(config);
  const metrics = createMediaMetrics(d.registry, repo);
  const graph = new GraphMediaClient({ baseUrl: config.GRAPH_API_BASE_URL, version: config.GRAPH_API_VERSION, timeoutMs: config.MEDIA_TIMEOUT_MS });
  const queue = new Queue<MediaJobData>(MEDIA_QUEUE, { connection: d.redis, prefix: config.QUEUE_PREFIX });
  queue.on('error', (err) => d.log.warn({ err: err.message }, 'queue error'));
  const urlKey = createHmac('sha256', config.MEDIA_URL_SECRET ?? config.API_TOKEN).update('wa-router media links').digest();
  let worker: { close(): Promise<void> } | undefined;
  const url = (messageId: number) => {
    const expires = Math.floor(Date.now() / 1000) + config.MEDIA_URL_TTL_SECONDS;
    const path = `/v1/media/${messageId}?expires=${expires}&signature=${signMediaPath(urlKey, messageId, expires)}`;
    return config.PUBLIC_URL ? new URL(path, config.PUBLIC_URL).toString() : path;
  };
  registerMediaLinks(url);

  const resolveChannel = async (channelId: number | undefined) => {
    const { rows } = await d.pool.query<{ id: number; phoneNumberId: string; accessToken: string | null }>(
      `SELECT id::int, phone_number_id AS "phoneNumberId", access_token AS "accessToken" FROM channels
        WHERE CASE WHEN $1::bigint IS NOT NULL THEN id = $1 WHEN $2::text IS NOT NULL THEN phone_number_id = $2 ELSE true END
        ORDER BY id LIMIT 2`,
      [channelId ?? null, config.WHATSAPP_PHONE_NUMBER_ID ?? null],
    );
    return rows.length === 1 ? rows[0]! : null;
  };

  return {
    queue,
    store,
    url,
    routes: (auth) =>
      mediaRoutes({ pool: d.pool, repo, store, graph, urlKey, urlTtlSeconds: config.MEDIA_URL_TTL_SECONDS, redirect: config.MEDIA_S3_REDIRECT, resolveChannel }, auth),
    startWorker(jobs) {
      worker = startMediaWorker({ config, redis: d.redis, queue, jobs, repo, store, graph, metrics, publish: d.publish, log: d.log, tokenPauseMs: TOKEN_PAUSE_MS });
    },
    storedMedia: (id, channelId, areaIds) => storedMediaOf(d.pool, id, channelId, areaIds),
    wrapSend: storedMediaSender({ pool: d.pool, repo, store, graph }),
    async stop() {
      await worker?.close();
      await queue.close();
      await store.close();
    },
  };
}
