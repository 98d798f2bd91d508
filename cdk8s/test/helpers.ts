import type { Manifest } from '../src/index.js';

export function find(manifests: readonly Manifest[], kind: string, name: string): Manifest {
  const m = manifests.find((x) => x.kind === kind && x.metadata.name === name);
  if (!m) throw new Error(`${kind}/${name} not synthesized; have ${manifests.map((x) => `${x.kind}/${x.metadata.name}`).join(', ')}`);
  return m;
}

// Manifests are plain JSON: tests walk them without the generated types.
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type Json = any;

export function podSpec(m: Manifest): Json {
  return (m as Json).spec.template.spec;
}

export function container(m: Manifest, index = 0): Json {
  return podSpec(m).containers[index];
}

export function envOf(m: Manifest): Record<string, string | undefined> {
  return Object.fromEntries((container(m).env as { name: string; value?: string }[]).map((e) => [e.name, e.value]));
}

/** `key = value` (ini, postgresql.conf) or `key value` (redis.conf) lines as a map. */
export function confMap(text: string, sep: '=' | ' '): Map<string, string> {
  const out = new Map<string, string>();
  for (const raw of text.split('\n')) {
    const line = raw.replace(/\s+#.*$/, '').trim();
    if (!line || line.startsWith('#') || line.startsWith(';') || line.startsWith('[')) continue;
    const i = line.indexOf(sep);
    if (i < 0) continue;
    out.set(line.slice(0, i).trim(), line.slice(i + 1).trim());
  }
  return out;
}
