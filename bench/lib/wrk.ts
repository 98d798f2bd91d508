// wrk (C, epoll) drives the HTTP benchmarks: it leaves the shared cores to the server.
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const SCRIPT = fileURLToPath(new URL('./wrk.lua', import.meta.url));

export interface WrkResult {
  readonly requests: number;
  readonly seconds: number;
  readonly rps: number;
  readonly non2xx: number;
  readonly socketErrors: number;
  readonly p50Ms: number;
  readonly p90Ms: number;
  readonly p99Ms: number;
  readonly maxMs: number;
}

export function assertLoopback(url: string): void {
  const host = new URL(url).hostname;
  if (!(host === 'localhost' || host === '[::1]' || host === '::1' || /^127\./.test(host))) throw new Error(`benchmarks only target loopback, not ${host}`);
}

export async function wrk(url: string, opts: { bodyFile: string; signature?: string; connections: number; seconds: number; threads?: number }): Promise<WrkResult> {
  assertLoopback(url);
  const args = ['-t', String(opts.threads ?? 2), '-c', String(opts.connections), '-d', `${opts.seconds}s`, '--timeout', '5s', '-s', SCRIPT, url];
  const { stderr } = await new Promise<{ stdout: string; stderr: string }>((resolve, reject) => {
    execFile('wrk', args, { env: { ...process.env, WRK_BODY_FILE: opts.bodyFile, WRK_SIGNATURE: opts.signature ?? '' }, timeout: (opts.seconds + 30) * 1000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`wrk failed: ${err.message}\n${stderr}`));
      else resolve({ stdout, stderr });
    });
  });
  const line = stderr.split('\n').find((l) => l.startsWith('WRK_JSON '));
  if (!line) throw new Error(`wrk printed no summary:\n${stderr}`);
  const j = JSON.parse(line.slice('WRK_JSON '.length)) as Record<string, number>;
  const seconds = j.duration_us! / 1e6;
  return {
    requests: j.requests!,
    seconds,
    rps: j.requests! / seconds,
    non2xx: j.non2xx!,
    socketErrors: j.socket_errors!,
    p50Ms: j.p50_us! / 1000,
    p90Ms: j.p90_us! / 1000,
    p99Ms: j.p99_us! / 1000,
    maxMs: j.max_us! / 1000,
  };
}
