// SVG charts of bench/results/latest.json and chaos.json, written beside them as plain SVG text
// (no browser, no native dependency): GitHub shows them in the README as they are.
import fs from 'node:fs';
import path from 'node:path';
import type { ScenarioResult, Timeline } from '../chaos.js';

/** A number as stored in the result files: null not measured, "Infinity"/"NaN" as written by `keepNonFinite`. */
export type Stored = number | 'Infinity' | '-Infinity' | 'NaN' | null;

export interface Figure {
  readonly name: string;
  readonly value: Stored;
  readonly unit: string;
  readonly baseline: Stored;
  readonly baselineName?: string;
  readonly target: Stored;
  readonly targetKind?: 'min' | 'max';
  readonly met: boolean | null;
  readonly skipped?: string;
}

const FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif"';
const COLORS = { value: '#2563eb', baseline: '#9ca3af', target: '#dc2626', fault: '#fde68a', acked: '#16a34a', stored: '#2563eb' };
const OTHER_STATUS = ['#dc2626', '#ea580c', '#9333ea', '#0891b2', '#be185d'];

const esc = (s: string): string => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;');
const finite = (v: Stored): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const label = (v: Stored): string => (v === null ? 'not measured' : v === 'Infinity' ? '∞' : v === '-Infinity' ? '-∞' : v === 'NaN' ? 'NaN' : fmt(v));
const fmt = (n: number): string => (Math.abs(n) >= 1000 ? Math.round(n).toLocaleString('en-US') : String(Math.round(n * 100) / 100));

function svg(width: number, height: number, title: string, body: string[]): string {
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" ${FONT} font-size="12">`,
    `<title>${esc(title)}</title>`,
    `<rect width="${width}" height="${height}" fill="#ffffff"/>`,
    `<text x="16" y="24" font-size="15" font-weight="600">${esc(title)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

/**
 * One benchmark group: per figure, its bar beside its same-run baseline's and the target as a
 * red line. Each row has its own scale (a group mixes units: events/s, ms, ratios).
 */
export function benchChart(group: string, figures: readonly Figure[], runDate: string): string {
  const width = 960;
  const left = 16;
  const barX = 320;
  const barMax = width - barX - 300;
  const rowH = 62;
  const body: string[] = [
    `<text x="${left}" y="42" fill="#4b5563">bars: this run (blue) beside its same-run baseline (grey); red line: target; each row on its own scale</text>`,
  ];
  figures.forEach((f, i) => {
    const y = 60 + i * rowH;
    const v = finite(f.value);
    const b = finite(f.baseline);
    const t = finite(f.target);
    const max = Math.max(v ?? 0, b ?? 0, t ?? 0) || 1;
    const w = (x: number) => Math.max(1, (x / max) * barMax);
    const met = f.met === null ? '' : f.met ? ' · met' : ' · NOT met';
    body.push(`<g class="figure" data-name="${esc(f.name)}">`);
    body.push(`<text x="${left}" y="${y + 14}" font-weight="600">${esc(f.name)}</text>`);
    body.push(`<text x="${left}" y="${y + 30}" fill="#4b5563">${esc(f.unit)}${t === null ? '' : ` · target ${f.targetKind === 'max' ? '≤' : '≥'} ${fmt(t)}`}${esc(met)}</text>`);
    if (f.skipped) {
      body.push(`<text x="${barX}" y="${y + 22}" fill="#4b5563">not measured: ${esc(f.skipped)}</text>`);
    } else {
      body.push(bar(barX, y + 4, v === null ? 0 : w(v), COLORS.value, `${label(f.value)} ${f.unit}`, 'value'));
      if (f.baseline !== null) body.push(bar(barX, y + 26, b === null ? 0 : w(b), COLORS.baseline, `${label(f.baseline)} (${f.baselineName ?? 'baseline'})`, 'baseline'));
      if (t !== null) body.push(`<line class="target" x1="${barX + w(t)}" x2="${barX + w(t)}" y1="${y}" y2="${y + 48}" stroke="${COLORS.target}" stroke-width="2"/>`);
    }
    body.push('</g>');
  });
  return svg(width, 72 + figures.length * rowH, `${group} benchmark · run ${runDate}`, body);
}

function bar(x: number, y: number, w: number, color: string, text: string, cls: string): string {
  return `<rect class="${cls}" x="${x}" y="${y}" width="${w.toFixed(1)}" height="18" fill="${color}"/><text x="${(x + w + 6).toFixed(1)}" y="${y + 13}">${esc(text)}</text>`;
}

/** Stored rows per second from the cumulative counts (a gap where a count, or the one before it, is missing). */
function storedPerSecond(total: readonly (number | null)[]): (number | null)[] {
  return total.map((n, i) => {
    const prev = i === 0 ? 0 : total[i - 1];
    return n === null || prev === null || prev === undefined ? null : Math.max(0, n - prev);
  });
}

/** A scenario's answers over time: acked, stored and each non-200 status per second, the fault window shaded. */
export function chaosChart(s: ScenarioResult, runDate: string): string {
  const title = `chaos ${s.name} · run ${runDate}`;
  if (!s.timeline) return chaosSummary(s, title);
  const tl: Timeline = s.timeline;
  const series: { name: string; color: string; points: (number | null)[] }[] = [
    { name: 'acked/s (first 200 per message)', color: COLORS.acked, points: tl.acked },
    ...(tl.storedTotal.length ? [{ name: 'stored/s (rows in messages)', color: COLORS.stored, points: storedPerSecond(tl.storedTotal) }] : []),
    ...Object.keys(tl.answers).filter((k) => k !== '200').sort().map((k, i) => ({ name: `${k === '0' ? 'no answer' : k}/s`, color: OTHER_STATUS[i % OTHER_STATUS.length]!, points: tl.answers[k]! })),
  ];
  const width = 760;
  const height = 340;
  const plot = { x: 56, y: 50, w: width - 56 - 24, h: 200 };
  const seconds = Math.max(1, ...series.map((x) => x.points.length));
  const top = Math.max(1, ...series.flatMap((x) => x.points.map((p) => p ?? 0)));
  const X = (sec: number) => plot.x + (sec / seconds) * plot.w;
  const Y = (n: number) => plot.y + plot.h - (n / top) * plot.h;
  const body: string[] = [];
  if (tl.fault) {
    const x1 = X(tl.fault.start);
    body.push(`<rect class="fault" x="${x1.toFixed(1)}" y="${plot.y}" width="${Math.max(2, X(tl.fault.end) - x1).toFixed(1)}" height="${plot.h}" fill="${COLORS.fault}"/>`);
    body.push(`<text x="${(x1 + 4).toFixed(1)}" y="${plot.y + 14}" fill="#92400e">fault ${tl.fault.start}–${tl.fault.end} s</text>`);
  }
  body.push(`<line x1="${plot.x}" x2="${plot.x}" y1="${plot.y}" y2="${plot.y + plot.h}" stroke="#111827"/>`);
  body.push(`<line x1="${plot.x}" x2="${plot.x + plot.w}" y1="${plot.y + plot.h}" y2="${plot.y + plot.h}" stroke="#111827"/>`);
  for (const f of [0, 0.5, 1]) body.push(`<text x="${plot.x - 6}" y="${(Y(top * f) + 4).toFixed(1)}" text-anchor="end">${fmt(top * f)}</text>`);
  const step = Math.max(1, Math.ceil(seconds / 10 / 5) * 5);
  for (let sec = 0; sec <= seconds; sec += step) body.push(`<text x="${X(sec).toFixed(1)}" y="${plot.y + plot.h + 16}" text-anchor="middle">${sec}</text>`);
  body.push(`<text x="${plot.x + plot.w / 2}" y="${plot.y + plot.h + 32}" text-anchor="middle" fill="#4b5563">seconds from the start of the load (per second: answers by the second they came back)</text>`);
  for (const x of series) {
    // A gap (null) splits the line: a second with no count is not a second with zero.
    const runs: string[] = [];
    let cur: string[] = [];
    x.points.forEach((p, i) => {
      if (p === null) {
        if (cur.length) runs.push(cur.join(' '));
        cur = [];
      } else cur.push(`${X(i + 0.5).toFixed(1)},${Y(p).toFixed(1)}`);
    });
    if (cur.length) runs.push(cur.join(' '));
    for (const r of runs) body.push(`<polyline class="series" data-series="${esc(x.name)}" points="${r}" fill="none" stroke="${x.color}" stroke-width="1.5"/>`);
  }
  series.forEach((x, i) => {
    const lx = plot.x + (i % 3) * 260;
    const ly = plot.y + plot.h + 52 + Math.floor(i / 3) * 18;
    body.push(`<rect x="${lx}" y="${ly - 9}" width="14" height="4" fill="${x.color}"/><text x="${lx + 20}" y="${ly}">${esc(x.name)}</text>`);
  });
  body.push(`<text x="16" y="40" fill="#4b5563">${esc(`sent ${s.sent}, acked ${s.acked}, stored ${s.stored}, lost ${s.missing}, duplicated ${s.duplicated}, recovery ${s.recoverySeconds ?? '-'} s · ${s.passed ? 'PASS' : 'FAIL'}`)}</text>`);
  return svg(width, height, title, body);
}

/** A result from before timelines were recorded: its totals as bars, saying what is missing. */
function chaosSummary(s: ScenarioResult, title: string): string {
  const rows: [string, number][] = [['sent', s.sent], ['acked', s.acked], ['stored', s.stored], ['lost (acked, not stored)', s.missing], ['duplicated', s.duplicated], ['retried', s.retried], ...Object.entries(s.answers).map(([k, n]): [string, number] => [`answers ${k}`, n])];
  const max = Math.max(1, ...rows.map(([, n]) => n));
  const body = [`<text x="16" y="42" fill="#4b5563">${esc(`totals only: this run recorded no timeline (re-run \`make chaos\`) · recovery ${s.recoverySeconds ?? '-'} s · ${s.passed ? 'PASS' : 'FAIL'}`)}</text>`];
  rows.forEach(([name, n], i) => {
    const y = 58 + i * 24;
    body.push(`<text x="16" y="${y + 13}">${esc(name)}</text>`);
    body.push(bar(200, y, Math.max(1, (n / max) * 420), name.startsWith('lost') || name === 'duplicated' ? COLORS.target : COLORS.value, fmt(n), 'value'));
  });
  return svg(760, 70 + rows.length * 24, title, body);
}

/** The group of a figure: its name up to the first dot (`router.p95_…` → router). */
export const groupOf = (name: string): string => name.split('.')[0]!;

/** Writes `<group>.svg` for every benchmark group; returns the file names. */
export function writeBenchCharts(dir: string, figures: readonly Figure[], generatedAt: string): string[] {
  const groups = new Map<string, Figure[]>();
  for (const f of figures) groups.set(groupOf(f.name), [...(groups.get(groupOf(f.name)) ?? []), f]);
  fs.mkdirSync(dir, { recursive: true });
  return [...groups].map(([g, fs_]) => {
    const file = `${g}.svg`;
    fs.writeFileSync(path.join(dir, file), benchChart(g, fs_, generatedAt.slice(0, 10)));
    return file;
  });
}

/** Writes `chaos-<scenario>.svg` for every scenario (titled with the scale when not 1: not comparable); returns the file names. */
export function writeChaosCharts(dir: string, scenarios: readonly ScenarioResult[], generatedAt: string, scale = 1): string[] {
  fs.mkdirSync(dir, { recursive: true });
  return scenarios.map((s) => {
    const file = `chaos-${s.name}.svg`;
    fs.writeFileSync(path.join(dir, file), chaosChart(s, `${generatedAt.slice(0, 10)}${scale === 1 ? '' : `, scale ${scale}`}`));
    return file;
  });
}
