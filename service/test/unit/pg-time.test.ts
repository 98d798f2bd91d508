import pg from 'pg';
import { describe, expect, it } from 'vitest';
import { isoFromPg } from '../../src/store/pg-time.js';

/** What the API wrote before: node-postgres's Date, formatted by toISOString. */
const viaDate = (text: string) => (pg.types.getTypeParser(pg.types.builtins.TIMESTAMPTZ, 'text')(text) as Date).toISOString();

describe('isoFromPg', () => {
  it('writes a UTC timestamptz exactly as its Date would, microseconds truncated to milliseconds', () => {
    for (const t of ['2026-11-30 17:01:28.123456+00', '2026-11-30 17:01:28.999999+00', '2026-11-30 17:01:28+00', '2026-11-30 17:01:28.5+00', '2026-11-30 17:01:28.05+00', '1999-01-01 00:00:00.000001+00', '0099-01-01 00:00:00.12+00']) {
      expect(isoFromPg(t), t).toBe(viaDate(t));
    }
  });

  it('goes through a Date for any other zone, so a server not in UTC still gets the instant right', () => {
    for (const t of ['2026-11-30 14:01:28.123456-03', '2026-11-30 22:31:28.5+05:30', '1890-01-01 00:00:00+00:53:28', '2026-11-30 14:01:28+01', '2026-11-30 14:01:28.1+10', '2026-11-30 14:01:28.123456+10']) {
      expect(isoFromPg(t), t).toBe(viaDate(t));
    }
    expect(isoFromPg('2026-11-30 14:01:28.123456-03')).toBe('2026-11-30T17:01:28.123Z');
  });

  it('leaves years past 9999 and before the era to the Date too', () => {
    for (const t of ['10000-01-01 00:00:00+00', '12345-06-07 08:09:10.5+00', '0001-01-01 00:00:00+00 BC']) expect(isoFromPg(t), t).toBe(viaDate(t));
  });
});
