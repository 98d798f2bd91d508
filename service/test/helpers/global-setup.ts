// Starts one real Postgres and one real Redis for the whole run, migrates a template
// database, and stops both at the end. Test files clone the template (fast, isolated).
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import pg from 'pg';
import type { TestProject } from 'vitest/node';
import { startPostgres } from '../../../scripts/stack/postgres.js';
import { startRedis } from '../../../scripts/stack/redis.js';
import { freePort } from '../../../scripts/stack/proc.js';
import { migrate } from '../../src/store/migrate.js';

declare module 'vitest' {
  export interface ProvidedContext {
    pgAdminUrl: string;
    pgTemplate: string;
    redisUrl: string;
    redisPassword: string;
    stackDir: string;
  }
}

export default async function setup(project: TestProject) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'wa-router-test-'));
  fs.chmodSync(dir, 0o755);
  const password = 'test-' + Math.random().toString(36).slice(2);
  const [pgPort, redisPort] = [await freePort(), await freePort()];
  const [postgres, redis] = await Promise.all([
    startPostgres({ dir: path.join(dir, 'postgres'), port: pgPort, password, ephemeral: true, conf: 'max_connections = 300\nshared_buffers = 256MB' }),
    startRedis({ dir: path.join(dir, 'redis'), port: redisPort, password }),
  ]);
  const template = 'wa_template';
  const admin = new pg.Client({ connectionString: postgres.url });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${template}`);
  await admin.end();
  const tplPool = new pg.Pool({ connectionString: postgres.url.replace(/\/[^/]+$/, `/${template}`), max: 1 });
  await migrate(tplPool);
  await tplPool.end();

  project.provide('pgAdminUrl', postgres.url);
  project.provide('pgTemplate', template);
  project.provide('redisUrl', redis.url);
  project.provide('redisPassword', password);
  project.provide('stackDir', dir);

  return async () => {
    await Promise.all([postgres.stop(), redis.stop()]);
    fs.rmSync(dir, { recursive: true, force: true });
  };
}
