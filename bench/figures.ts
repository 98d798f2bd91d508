// `npx tsx bench/figures.ts`: the README's figure tables, regenerated from the last `make bench`
// (bench/results/latest.json) and `make chaos` (bench/results/chaos.json). The "old" column is
// kept as written in the README (the figures from before a change of method, side by side with
// the new ones); rows not re-measured stay as they were. Running it twice changes nothing more.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from './lib/results.js';
import type { ScenarioResult } from './chaos.js';

const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const README = path.join(ROOT, 'README.md');
const BEGIN = '<!-- figures:begin -->';
const END = '<!-- figures:end -->';

type Row = [name: string, old: string, now: string, baseline: string, ratio: string, met: string];

const read = <T>(file: string): T | undefined => (fs.existsSync(file) ? (JSON.parse(fs.readFileSync(file, 'utf8')) as T) : undefined);

/** The rows of the block as it stands, by name. */
function previous(block: string): Map<string, Row> {
  const rows = new Map<string, Row>();
  for (const line of block.split('\n')) {
    const cells = line.split(' | ').map((c) => c.replace(/^\| ?| ?\|$/g, '').trim());
    if (cells.length === 6 && cells[0]!.startsWith('`')) rows.set(cells[0]!, cells as Row);
  }
  return rows;
}

/** name → [new, baseline, ratio, met] from the result files. */
function fresh(bench?: { results: BenchResult[] }, chaos?: { scenarios: ScenarioResult[] }): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const r of bench?.results ?? []) {
    // JSON has no Infinity: a latency that never ended comes back as null.
    const value = r.value === null ? '∞' : String(r.value);
    const baseline = r.baseline === null ? '-' : `${r.baseline} (${r.baselineName ?? 'baseline'})`;
    out.set(`\`${r.name}\``, [`${value} ${r.unit}`, baseline, r.ratio === null ? '-' : String(r.ratio), r.met === null ? '-' : r.met ? 'yes' : r.failed ? `NO (${r.failed})` : 'NO']);
  }
  for (const s of chaos?.scenarios ?? []) {
    out.set(`\`chaos ${s.name}\``, [`acked ${s.acked}/${s.sent}, lost ${s.missing}, duplicated ${s.duplicated}, recovery ${s.recoverySeconds ?? '-'} s`, '-', '-', s.passed ? 'PASS' : `FAIL (${(s.failures ?? []).join(', ')})`]);
  }
  return out;
}

function render(old: Map<string, Row>, bench?: { generatedAt: string; results: BenchResult[] }, chaos?: { generatedAt: string; scenarios: ScenarioResult[] }): string {
  const now = fresh(bench, chaos);
  const rows = [...new Set([...old.keys(), ...now.keys()])].map((n): Row => {
    const f = now.get(n);
    const o = old.get(n);
    if (!f) return o!;
    return [n, o?.[1] ?? '-', f[0]!, f[1]!, f[2]!, f[3]!];
  });
  return [
    BEGIN,
    `Bench run ${bench?.generatedAt ?? 'not re-run'}, chaos run ${chaos?.generatedAt ?? 'not re-run'} (regenerate: \`npx tsx bench/figures.ts\`).`,
    '',
    '| figure | old | new | baseline (same run) | ratio | met |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    END,
  ].join('\n');
}

const text = fs.readFileSync(README, 'utf8');
const from = text.indexOf(BEGIN);
const to = text.indexOf(END);
if (from < 0 || to < from) throw new Error(`README.md has no ${BEGIN} … ${END} block`);
const block = render(
  previous(text.slice(from, to)),
  read(path.join(ROOT, 'bench', 'results', 'latest.json')),
  read(path.join(ROOT, 'bench', 'results', 'chaos.json')),
);
fs.writeFileSync(README, text.slice(0, from) + block + text.slice(to + END.length));
console.log(`README.md: figures rewritten from bench/results/`);
