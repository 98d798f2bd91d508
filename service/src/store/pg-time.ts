// timestamptz columns read straight into the API's form (Date#toISOString: milliseconds, `Z`) for
// the pages the inbox reads most: node-postgres would parse every one into a Date (a regular
// expression and a Date per column) only for the view to format it back, which was a sixth of
// a conversation page's CPU in the web process.
import pg from 'pg';

const TIMESTAMPTZ = pg.types.builtins.TIMESTAMPTZ;
const parseDate = pg.types.getTypeParser(TIMESTAMPTZ, 'text');
/** Postgres's ISO output in UTC (DateStyle ISO, TimeZone UTC), microseconds optional. */
const UTC_TEXT = /^(\d{4}-\d{2}-\d{2}) (\d{2}:\d{2}:\d{2})(?:\.(\d{1,6}))?\+00$/;

/** Postgres's text of a timestamptz as Date#toISOString writes it; anything but plain UTC goes through a Date. */
export function isoFromPg(text: string): string {
  // The usual shape, `YYYY-MM-DD HH:MM:SS[.f…]+00`, by position: an inbox page writes hundreds of
  // these, and the regular expression was most of their cost.
  const n = text.length;
  if (n >= 22 && n <= 29 && text.charCodeAt(10) === 32 && text.charCodeAt(n - 3) === 43 && text.charCodeAt(n - 2) === 48 && text.charCodeAt(n - 1) === 48 && (n === 22 || text.charCodeAt(19) === 46)) {
    const ms = n === 22 ? '000' : n >= 26 ? text.slice(20, 23) : text.slice(20, n - 3).padEnd(3, '0');
    return `${text.slice(0, 10)}T${text.slice(11, 19)}.${ms}Z`;
  }
  const m = UTC_TEXT.exec(text);
  // Milliseconds truncated, as a Date keeps them.
  if (m) return `${m[1]}T${m[2]}.${(m[3] ?? '').padEnd(3, '0').slice(0, 3)}Z`;
  const d = parseDate(text) as Date | string;
  return d instanceof Date && !Number.isNaN(d.getTime()) ? d.toISOString() : String(d);
}

/** A query's `types`: timestamptz columns arrive as ISO strings, every other type as usual. */
export const ISO_TIMES: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') =>
    oid === TIMESTAMPTZ && format !== 'binary' ? isoFromPg : pg.types.getTypeParser(oid, format)) as pg.CustomTypesConfig['getTypeParser'],
};
