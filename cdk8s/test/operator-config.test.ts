// The operator's environment: values it would accept although they make it restart itself.
import { describe, expect, it } from 'vitest';
import { loadConfig } from '../src/operator/config.js';

describe('the operator configuration', () => {
  it('accepts the defaults (4 workers, 2 render threads, 60 s renders: 180 s worst case < 300 s stall bound)', () => {
    expect(loadConfig({}).OPERATOR_STALL_SECONDS).toBe(300);
  });

  it('refuses a render timeout at or past the liveness stall bound (a legitimate render would fail /healthz and restart the operator in a loop)', () => {
    expect(() => loadConfig({ OPERATOR_RENDER_TIMEOUT_SECONDS: '600' })).toThrow(/OPERATOR_STALL_SECONDS: .*OPERATOR_RENDER_TIMEOUT_SECONDS/);
  });

  it('refuses workers/threads/timeout whose worst-case wait for a render thread passes the stall bound (16 reconciles queue behind 1 thread of 60 s renders: 960 s > 300 s)', () => {
    expect(() => loadConfig({ OPERATOR_WORKERS: '16', OPERATOR_RENDER_THREADS: '1' })).toThrow(/OPERATOR_STALL_SECONDS: .*OPERATOR_WORKERS \/ OPERATOR_RENDER_THREADS/);
  });

  it('accepts the same workers once the stall bound covers their wait', () => {
    expect(loadConfig({ OPERATOR_WORKERS: '16', OPERATOR_RENDER_THREADS: '1', OPERATOR_STALL_SECONDS: '1100' }).OPERATOR_WORKERS).toBe(16);
  });
});
