// The chaos suite's CI subset (`make chaos` runs all scenarios, longer): the HA stack on this
// host, broken under load, must end with every message acked and every acked message stored once,
// in its rows and in its side effects (unread counts, statuses, counters).
import { describe, expect, it } from 'vitest';
import { runScenario, SCENARIOS } from '../../../bench/chaos.js';

const CI = ['redis-master-kill', 'process-kills', 'duplicates-shuffled'];
const selected = SCENARIOS.filter((s) => CI.includes(s.name));

// A renamed scenario would otherwise drop out of CI silently, and an empty selection runs nothing.
it('the CI subset names existing scenarios, every one of them', () => {
  expect(selected.map((s) => s.name).sort()).toEqual([...CI].sort());
});

describe.each(selected)('chaos: $name', (scenario) => {
  it('acks every message in the end, loses none, and passes the scenario\'s own checks', async () => {
    const r = await runScenario(scenario, { scale: 0.3, rate: 150 });
    // The figures in the CI log, passed or not (its summary keeps only the first failed line).
    console.info(`chaos ${r.name}: recovery ${r.recoverySeconds ?? '-'} s; ${r.notes ?? ''}`);
    // Meta redelivers until it gets a 200: a service answering 503 throughout must fail here.
    expect(r.sent).toBeGreaterThan(0);
    expect(r.acked).toBe(r.sent);
    expect(r.missing).toBe(0);
    expect(r.stored).toBeGreaterThanOrEqual(r.acked);
    // The harness's side-effect checks (a message counted twice in unread counts or counters,
    // statuses not applied) must be among those judged, and none may fail.
    expect(Object.keys(r.checks ?? {})).toEqual(expect.arrayContaining(['noDuplicateEffects', 'unreadNotShort', 'statusesApplied']));
    expect(r.duplicated).toBe(0);
    expect(r.failures, r.notes ?? r.name).toEqual([]);
    expect(r.passed, r.notes ?? r.name).toBe(true);
    if (scenario.name === 'redis-master-kill') {
      // Answered 503 while there is no master, 200 again well within 10 s of the kill.
      expect(r.answers['503'] ?? 0).toBeGreaterThan(0);
      expect(r.recoverySeconds).not.toBeNull();
      expect(r.recoverySeconds!, r.notes).toBeLessThan(10);
    }
  }, 240_000);
});
