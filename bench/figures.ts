// `npx tsx bench/figures.ts`: the README's figure tables, regenerated from the last `make bench`
// (bench/results/latest.json) and `make chaos` (bench/results/chaos.json). The "old" column is
// kept as written in the README (the figures from before a change of method, side by side with
// the new ones). Every new figure carries the date of its run (and the chaos scale when it was
// not 1), so a row not re-measured keeps its own date instead of appearing under the new one.
// Result files without their run parameters are refused. Running it twice changes nothing more.
// It also draws the results as SVG charts (bench/results/<group>.svg, chaos-<scenario>.svg, committed)
// and shows every chart found there under the table.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResult } from './lib/results.js';
import type { ChaosParams, ScenarioResult } from './chaos.js';
import { writeBenchCharts, writeChaosCharts } from './lib/svg.js';

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

/** A number as written by `keepNonFinite`: null was not measured, "Infinity" never ended, "NaN" could not be computed. */
type Stored = number | 'Infinity' | '-Infinity' | 'NaN' | null;
const shown = (v: Stored): string => (v === null ? 'not measured' : v === 'Infinity' ? '∞' : v === '-Infinity' ? '-∞' : v === 'NaN' ? 'NaN (not computable)' : String(v));

type BenchFile = { generatedAt: string; params?: Record<string, unknown>; results: (Omit<BenchResult, 'value' | 'baseline' | 'ratio'> & { value: Stored; baseline: Stored; ratio: Stored })[] };
type ChaosFile = { generatedAt: string; params?: ChaosParams; scenarios: ScenarioResult[] };

/** name → [new, baseline, ratio, met] from the result files. */
function fresh(bench?: BenchFile, chaos?: ChaosFile): Map<string, string[]> {
  const out = new Map<string, string[]>();
  const benchDate = bench?.generatedAt.slice(0, 10);
  for (const r of bench?.results ?? []) {
    const value = r.skipped ? `not measured: ${r.skipped} (run ${benchDate})` : `${shown(r.value)} ${r.unit} (run ${benchDate})`;
    const baseline = r.baseline === null ? '-' : `${shown(r.baseline)} (${r.baselineName ?? 'baseline'})`;
    out.set(`\`${r.name}\``, [value, baseline, r.ratio === null ? '-' : shown(r.ratio), r.met === null ? '-' : r.met ? 'yes' : r.failed ? `NO (${r.failed})` : 'NO']);
  }
  const run = chaos?.params && `run ${chaos.generatedAt.slice(0, 10)}${chaos.params.scale === 1 ? '' : `, scale ${chaos.params.scale} (not comparable to scale 1)`}, ${chaos.params.rate}/s`;
  for (const s of chaos?.scenarios ?? []) {
    const recovery = s.recoverySeconds === null ? 'not measured' : `${s.recoverySeconds} s`;
    const backlog = s.backlogStoredSeconds === undefined ? '' : `, backlog stored ${s.backlogStoredSeconds === null ? 'never' : `${s.backlogStoredSeconds} s`} after the return`;
    out.set(`\`chaos ${s.name}\``, [`acked ${s.acked}/${s.sent}, lost ${s.missing}, duplicated ${s.duplicated}, recovery ${recovery}${backlog} (${run})`, '-', '-', s.passed ? 'PASS' : `FAIL (${(s.failures ?? []).join(', ')})`]);
  }
  return out;
}

function render(old: Map<string, Row>, charts: readonly string[], bench?: BenchFile, chaos?: ChaosFile): string {
  const now = fresh(bench, chaos);
  const rows = [...new Set([...old.keys(), ...now.keys()])].map((n): Row => {
    const f = now.get(n);
    const o = old.get(n);
    if (!f) return o!;
    return [n, o?.[1] ?? '-', f[0]!, f[1]!, f[2]!, f[3]!];
  });
  return [
    BEGIN,
    'Each new figure names the run it comes from (regenerate: `npx tsx bench/figures.ts`).',
    '',
    '| figure | old | new | baseline (same run) | ratio | met |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows.map((r) => `| ${r.join(' | ')} |`),
    '',
    ...charts.map((f) => `![${f.replace(/\.svg$/, '')}](bench/results/${f})`),
    END,
  ].join('\n');
}

const text = fs.readFileSync(README, 'utf8');
const from = text.indexOf(BEGIN);
const to = text.indexOf(END);
if (from < 0 || to < from) throw new Error(`README.md has no ${BEGIN} … ${END} block`);
const bench = read<BenchFile>(path.join(ROOT, 'bench', 'results', 'latest.json'));
const chaos = read<ChaosFile>(path.join(ROOT, 'bench', 'results', 'chaos.json'));
// Without its parameters a file cannot say what it measured (a subset, another scale): refused.
if (bench && !bench.params) throw new Error('bench/results/latest.json has no run parameters: re-run `make bench`');
if (chaos && !chaos.params) throw new Error('bench/results/chaos.json has no run parameters: re-run `make chaos`');
const RESULTS = path.join(ROOT, 'bench', 'results');
if (bench) writeBenchCharts(RESULTS, bench.results, bench.generatedAt);
if (chaos) writeChaosCharts(RESULTS, chaos.scenarios, chaos.generatedAt, chaos.params?.scale);
// Every chart committed, not only this run's: a group not re-run keeps its last chart (dated in its title).
const charts = fs.readdirSync(RESULTS).filter((f) => f.endsWith('.svg')).sort((a, b) => Number(a.startsWith('chaos-')) - Number(b.startsWith('chaos-')) || a.localeCompare(b));
const block = render(previous(text.slice(from, to)), charts, bench, chaos);
fs.writeFileSync(README, text.slice(0, from) + block + text.slice(to + END.length));
console.log(`README.md: figures and ${charts.length} charts rewritten from bench/results/`);
