// Server settings for the local stack (make up, benchmarks): the very files the cdk8s tuning
// functions render for a preset's ConfigMaps, so the laptop and the cluster run the same config.
// postgres.ts and redis.ts append their invariants (loopback, port, paths, password) after these.
import os from 'node:os';
import { presets, type PresetName } from '../../cdk8s/src/presets.js';
import { renderPostgresConf, renderRedisConf } from '../../cdk8s/src/tuning/index.js';

export interface LocalTuning {
  readonly preset: PresetName;
  readonly postgres: string;
  readonly redis: string;
  readonly redisMaxmemory: string;
}

/** @param preset which preset's tuning; the contract's `make up` uses standard. */
export async function localTuning(preset: PresetName = 'standard'): Promise<LocalTuning> {
  const p = presets[preset];
  // Redis io-threads only help with cores to spare; size them for this machine, keep the rest.
  const redis = renderRedisConf(p, { scaleTo: { cpuCores: os.availableParallelism(), memoryGiB: 2.5 } });
  return { preset, postgres: renderPostgresConf(p), redis, redisMaxmemory: p.redis.maxmemory };
}
