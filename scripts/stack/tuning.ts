// Server settings for the local stack (make up, benchmarks) on top of the invariants in
// postgres.ts and redis.ts. Until the cdk8s tuning functions exist (issue 4), Postgres
// runs with its defaults; this is the one place to render a preset's files from them.

export interface LocalTuning {
  readonly postgres: string;
  readonly redis: string;
  readonly redisMaxmemory: string;
}

export async function localTuning(): Promise<LocalTuning> {
  return { postgres: '', redis: '', redisMaxmemory: '256mb' };
}
