import { describe, expect, it } from 'vitest';
import type { ScenarioResult } from '../../../bench/chaos.js';
import { benchChart, chaosChart, type Figure } from '../../../bench/lib/svg.js';

/** Well-formed XML, checked the small way: every tag closed in order, attributes quoted, no bare `&` or `<` in text. */
function assertWellFormed(xml: string): void {
  const stack: string[] = [];
  const tag = /<(\/?)([A-Za-z][\w:-]*)((?:\s+[\w:-]+="[^"<]*")*)\s*(\/?)>/y;
  let i = 0;
  while (i < xml.length) {
    const lt = xml.indexOf('<', i);
    const text = xml.slice(i, lt < 0 ? xml.length : lt);
    expect(text, `text before offset ${lt}`).not.toMatch(/&(?!(amp|lt|gt|quot|apos);)/);
    if (lt < 0) break;
    tag.lastIndex = lt;
    const m = tag.exec(xml);
    expect(m, `a malformed tag at offset ${lt}: ${xml.slice(lt, lt + 60)}`).not.toBeNull();
    const [, closing, name, , selfClosing] = m!;
    if (closing) expect(stack.pop(), `</${name}> closes another element`).toBe(name);
    else if (!selfClosing) stack.push(name!);
    i = tag.lastIndex;
  }
  expect(stack, 'elements left open').toEqual([]);
}

const widthOf = (svg: string, cls: string, n = 0): number => Number([...svg.matchAll(new RegExp(`class="${cls}"[^>]*width="([\\d.]+)"`, 'g'))][n]![1]);

describe('bench SVG charts', () => {
  const figures: Figure[] = [
    { name: 'ingest.webhooks_per_s', value: 500, unit: 'webhooks/s', baseline: 1000, baselineName: 'bare <http> & keep-alive', target: 400, targetKind: 'min', met: true },
    { name: 'ingest.p99_ms', value: 'Infinity', unit: 'ms', baseline: 12.5, baselineName: 'raw', target: 100, targetKind: 'max', met: false },
    { name: 'ingest.later', value: 'NaN', unit: 'x', baseline: null, target: null, met: null, skipped: 'not built yet' },
  ];

  it('draws each figure beside its same-run baseline, with values, target and run date', () => {
    const svg = benchChart('ingest', figures, '2026-11-30');
    assertWellFormed(svg);
    expect(svg).toContain('ingest benchmark · run 2026-11-30');
    expect(svg).toContain('500 webhooks/s');
    expect(svg).toContain('1,000 (bare &lt;http&gt; &amp; keep-alive)');
    expect(svg).toContain('∞ ms');
    expect(svg).toContain('not measured: not built yet');
    expect(svg.match(/class="value"/g)).toHaveLength(2);
    expect(svg.match(/class="baseline"/g)).toHaveLength(2);
    expect(svg.match(/class="target"/g)).toHaveLength(2);
    // The bars are to scale within their row: half the baseline's figure, half its length.
    expect(widthOf(svg, 'value') / widthOf(svg, 'baseline')).toBeCloseTo(0.5, 2);
  });

  const scenario = (timeline?: ScenarioResult['timeline']): ScenarioResult => ({
    name: 'redis-master-kill', description: 'kill', ackDurability: 'replicated', sent: 30, acked: 30, stored: 30, missing: 0, duplicated: 0,
    recoverySeconds: 2, recoveredWhen: 'x', retried: 4, requests: 34, answers: { 200: 30, 503: 4 }, drainSeconds: 0, doneAt: 0, passed: true, timeline,
  });

  it('draws the chaos timeline: acked, stored and non-200 per second, the fault shaded, a missing count as a gap', () => {
    const svg = chaosChart(scenario({ answers: { 200: [10, 5, 0, 15], 503: [0, 2, 2, 0] }, acked: [10, 5, 0, 15], storedTotal: [8, null, 14, 30], fault: { start: 1, end: 2.5 } }), '2026-11-30');
    assertWellFormed(svg);
    expect(svg).toContain('chaos redis-master-kill · run 2026-11-30');
    expect(svg).toContain('fault 1–2.5 s');
    expect(svg.match(/data-series="acked\/s[^"]*"/g)).toHaveLength(1);
    expect(svg.match(/data-series="503\/s"/g)).toHaveLength(1);
    // Stored per second 8, –, –, 16: the unread second and the one after it split the line in two.
    const stored = [...svg.matchAll(/data-series="stored\/s[^"]*" points="([^"]*)"/g)].map((m) => m[1]!.split(' ').length);
    expect(stored).toEqual([1, 1]);
    expect(svg).not.toContain('data-series="200/s"');
  });

  it('draws the totals of a result recorded before timelines, saying so', () => {
    const svg = chaosChart(scenario(), '2026-11-30');
    assertWellFormed(svg);
    expect(svg).toContain('totals only');
    expect(svg).toContain('answers 503');
  });
});
