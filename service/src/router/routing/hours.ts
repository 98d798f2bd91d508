// Business hours: weekly intervals in an IANA time zone.
import { WEEKDAYS, type BusinessHours } from '../areas/schema.js';

const formatters = new Map<string, Intl.DateTimeFormat>();

function localTime(timeZone: string, at: Date): { day: string; hhmm: string } {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, weekday: 'short', hour: '2-digit', minute: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  const parts = Object.fromEntries(f.formatToParts(at).map((p) => [p.type, p.value]));
  return { day: String(parts.weekday).toLowerCase().slice(0, 3), hhmm: `${parts.hour}:${parts.minute}` };
}

export function isOpen(hours: BusinessHours, at: Date): boolean {
  const { day, hhmm } = localTime(hours.timeZone, at);
  if (!(WEEKDAYS as readonly string[]).includes(day)) return true;
  return hours.intervals.some((i) => i.day === day && hhmm >= i.from && hhmm < i.to);
}
