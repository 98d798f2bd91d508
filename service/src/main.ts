#!/usr/bin/env node
// Entry point: picks the role from argv and runs it. Nothing else happens here.
import { buildApp, ROLES, type Role } from './app.js';
import { ConfigError, loadConfig } from './config/env.js';

const role = process.argv[2] as Role | undefined;
const check = process.argv[3] === 'check';
if (!role || !ROLES.includes(role) || (process.argv[3] !== undefined && !(check && role === 'migrate'))) {
  console.error(`usage: wa-router <${ROLES.join('|')}> | wa-router migrate check`);
  process.exit(2);
}

let config;
try {
  config = loadConfig();
} catch (err) {
  if (err instanceof ConfigError) {
    console.error(err.message);
    process.exit(2);
  }
  throw err;
}

const app = await buildApp(config, role, { migrateCheck: check });
const deadline = config.SHUTDOWN_TIMEOUT_MS;
let stopping = false;
const shutdown = (signal: string) => {
  if (stopping) return;
  stopping = true;
  app.log.info({ signal }, 'shutting down');
  const force = setTimeout(() => {
    app.log.error({ timeoutMs: deadline }, 'graceful shutdown timed out; exiting');
    process.exit(1);
  }, deadline);
  force.unref();
  app.stop().then(
    () => process.exit(0),
    (err: unknown) => {
      app.log.error({ err }, 'shutdown failed');
      process.exit(1);
    },
  );
};
process.on('SIGTERM', () => shutdown('SIGTERM'));
process.on('SIGINT', () => shutdown('SIGINT'));

try {
  await app.start();
} catch (err) {
  app.log.fatal({ err }, 'failed to start');
  process.exit(1);
}
if (role === 'migrate') {
  await app.stop();
  process.exit(0);
}
