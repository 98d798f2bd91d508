// Kubernetes, Postgres and Redis each spell sizes their own way; the checks compare them in one unit.

const BINARY: Record<string, number> = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40 };
const DECIMAL: Record<string, number> = { k: 1e3, M: 1e6, G: 1e9, T: 1e12 };

/** A Kubernetes CPU quantity (`"1500m"`, `"1.5"`, `2`) in millicores. */
export function cpuMillis(q: string | number): number {
  if (typeof q === 'number') return Math.round(q * 1000);
  const m = /^(\d+(?:\.\d+)?)(m?)$/.exec(q.trim());
  if (!m) throw new Error(`not a CPU quantity: ${JSON.stringify(q)} (expected e.g. "500m" or "2")`);
  return m[2] === 'm' ? Math.round(Number(m[1])) : Math.round(Number(m[1]) * 1000);
}

/** A Kubernetes memory quantity (`"512Mi"`, `"2Gi"`, `"1G"`) in bytes. */
export function memoryBytes(q: string): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q.trim());
  if (!m) throw new Error(`not a memory quantity: ${JSON.stringify(q)} (expected e.g. "512Mi" or "2Gi")`);
  const unit = m[2];
  return Math.round(Number(m[1]) * (unit ? (BINARY[unit] ?? DECIMAL[unit] ?? 1) : 1));
}

/** A postgresql.conf size (`"512MB"`, `"2GB"`, `"64kB"`: powers of 1024, as Postgres reads them) in bytes. */
export function pgBytes(q: string): number {
  const m = /^(\d+)\s*(kB|MB|GB|TB)?$/.exec(q.trim());
  if (!m) throw new Error(`not a Postgres size: ${JSON.stringify(q)} (expected e.g. "512MB")`);
  const mult = { kB: 2 ** 10, MB: 2 ** 20, GB: 2 ** 30, TB: 2 ** 40 }[m[2] as 'kB' | 'MB' | 'GB' | 'TB'] ?? 1;
  return Number(m[1]) * mult;
}

/** A redis.conf size (`"4gb"` = 4 GiB, `"4g"` = 4·10⁹, as Redis reads them) in bytes. */
export function redisBytes(q: string): number {
  const m = /^(\d+)(kb|mb|gb|k|m|g)?$/i.exec(q.trim());
  if (!m) throw new Error(`not a Redis size: ${JSON.stringify(q)} (expected e.g. "4gb")`);
  const mult: Record<string, number> = { kb: 2 ** 10, mb: 2 ** 20, gb: 2 ** 30, k: 1e3, m: 1e6, g: 1e9 };
  return Number(m[1]) * (m[2] ? (mult[m[2].toLowerCase()] ?? 1) : 1);
}

/** Bytes as the largest whole Postgres unit (`2GB`, `768MB`, `64kB`). */
export function formatPg(bytes: number): string {
  for (const [unit, size] of [['GB', 2 ** 30], ['MB', 2 ** 20]] as const) {
    if (bytes >= size && bytes % size === 0) return `${bytes / size}${unit}`;
  }
  return `${Math.max(64, Math.floor(bytes / 1024))}kB`;
}

export const GiB = 2 ** 30;
export const MiB = 2 ** 20;
