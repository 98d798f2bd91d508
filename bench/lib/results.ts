// The benchmark table and bench/results/latest.json (shape fixed by the contract).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

export interface BenchResult {
  readonly name: string;
  readonly value: number;
  readonly unit: string;
  /** The same-run baseline's figure (null where the row is itself a reference). */
  readonly baseline: number | null;
  readonly baselineName?: string;
  readonly ratio: number | null;
  readonly target: number | null;
  /** Whether `target` is a floor (value must reach it) or a ceiling. */
  readonly targetKind?: 'min' | 'max';
  readonly met: boolean | null;
  /** What the figure includes: what is timed, at what load, on what. */
  readonly note: string;
  /** Why the figure does not count (errors during its run): `met` is then false. */
  readonly failed?: string;
  /** Why nothing was measured (the feature is not there yet): value NaN, `met` null. */
  readonly skipped?: string;
}

export function result(r: Omit<BenchResult, 'ratio' | 'met'> & { ratio?: number | null }): BenchResult {
  const ratio = r.ratio !== undefined ? r.ratio : r.baseline ? r.value / r.baseline : null;
  const kind = r.targetKind ?? 'min';
  const reached = r.target === null ? null : kind === 'min' ? r.value >= r.target : r.value <= r.target;
  const met = r.failed ? false : reached;
  return { ...r, ratio: ratio === null ? null : Math.round(ratio * 1000) / 1000, value: Math.round(r.value * 100) / 100, baseline: r.baseline === null ? null : Math.round(r.baseline * 100) / 100, targetKind: kind, met };
}

const RESULTS_DIR = path.resolve(fileURLToPath(new URL('../results', import.meta.url)));

/**
 * JSON turns Infinity and NaN into null, the value of "not measured": kept as strings instead,
 * so a latency that never ended reads "Infinity", a figure that could not be computed "NaN".
 */
export const keepNonFinite = (_key: string, v: unknown): unknown => (typeof v === 'number' && !Number.isFinite(v) ? String(v) : v);

/** Writes the results with the parameters of the run that produced them. */
export function writeResults(results: readonly BenchResult[], params: Record<string, unknown>, file = 'latest'): { json: string; md: string; generatedAt: string } {
  fs.mkdirSync(RESULTS_DIR, { recursive: true });
  const json = path.join(RESULTS_DIR, `${file}.json`);
  const generatedAt = new Date().toISOString();
  fs.writeFileSync(json, JSON.stringify({ generatedAt, params, results }, keepNonFinite, 2) + '\n');
  const md = path.join(RESULTS_DIR, `${file}.md`);
  fs.writeFileSync(md, table(results, 'md') + '\n');
  return { json, md, generatedAt };
}

export function table(results: readonly BenchResult[], style: 'text' | 'md' = 'text'): string {
  const head = ['benchmark', 'value', 'unit', 'baseline', 'ratio', 'target', 'met'];
  const rows = results.map((r) => [
    r.name,
    r.skipped ? `not measured: ${r.skipped}` : String(r.value),
    r.unit,
    r.baseline === null ? '-' : `${r.baseline}${r.baselineName ? ` (${r.baselineName})` : ''}`,
    r.ratio === null ? '-' : String(r.ratio),
    r.target === null ? '-' : `${r.targetKind === 'max' ? '≤' : '≥'} ${r.target}`,
    r.met === null ? '-' : r.met ? 'yes' : r.failed ? `NO (${r.failed})` : 'NO',
  ]);
  if (style === 'md') {
    const md = (h: string[], rs: string[][]) => [`| ${h.join(' | ')} |`, `|${h.map(() => '---').join('|')}|`, ...rs.map((r) => `| ${r.map((c) => c.replace(/\|/g, '\\|')).join(' | ')} |`)];
    return [...md(head, rows), '', ...md(['benchmark', 'includes'], results.map((r) => [r.name, r.note]))].join('\n');
  }
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
  const fmt = (r: string[]) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ');
  return [fmt(head), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(fmt)].join('\n');
}
