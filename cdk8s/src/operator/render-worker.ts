// The chart is rendered on a thread of its own: a render can take seconds on a loaded host, and the
// main thread must stay free to renew the leader Lease meanwhile.
import { parentPort } from 'node:worker_threads';
import { render, type WhatsAppRouter } from './render.js';

parentPort!.on('message', ({ cr }: { cr: WhatsAppRouter }) => {
  try {
    parentPort!.postMessage({ rendering: render(cr) });
  } catch (err) {
    parentPort!.postMessage({ error: (err as Error).stack ?? String(err) });
  }
});
// Loaded: renders may be timed from here.
parentPort!.postMessage({ ready: true });
