// The chart is rendered on a thread of its own: a render can take seconds on a loaded host, and the
// main thread must stay free to renew the leader Lease meanwhile.
import { parentPort } from 'node:worker_threads';
import { render, type WhatsAppRouter } from './render.js';

parentPort!.on('message', ({ id, cr }: { id: number; cr: WhatsAppRouter }) => {
  try {
    parentPort!.postMessage({ id, rendering: render(cr) });
  } catch (err) {
    parentPort!.postMessage({ id, error: (err as Error).stack ?? String(err) });
  }
});
