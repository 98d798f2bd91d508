// Review proofs (failing on purpose): configuration the operator accepts although it restarts itself.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/operator/config.js';

describe('REVIEW: the operator configuration', () => {
  it('refuses a render timeout at or past the liveness stall bound (a legitimate render would fail /healthz and restart the operator in a loop)', () => {
    expect(() => loadConfig({ OPERATOR_RENDER_TIMEOUT_SECONDS: '600' })).toThrow(/OPERATOR_RENDER_TIMEOUT_SECONDS|OPERATOR_STALL_SECONDS/);
  });

  it('refuses workers/threads/timeout whose worst-case wait for a render thread passes the stall bound (16 reconciles queue behind 1 thread of 60 s renders: 960 s > 300 s)', () => {
    expect(() => loadConfig({ OPERATOR_WORKERS: '16', OPERATOR_RENDER_THREADS: '1' })).toThrow(/OPERATOR_STALL_SECONDS|OPERATOR_WORKERS|OPERATOR_RENDER_THREADS/);
  });
});
