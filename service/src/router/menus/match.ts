// A customer's answer to a menu level: the tapped id, the option's number, or its title typed
// (case- and accent-insensitive).
import type { MenuOption } from './schema.js';

export const normalize = (s: string): string =>
  s.normalize('NFD').replace(/\p{M}/gu, '').toLowerCase().replace(/\s+/g, ' ').trim();

export function matchOption(options: readonly MenuOption[], answer: { replyId: string | null; text: string | null }): MenuOption | null {
  if (answer.replyId !== null) return options.find((o) => o.id === answer.replyId) ?? null;
  if (answer.text === null) return null;
  const text = normalize(answer.text).replace(/[.)]$/, '');
  if (/^\d+$/.test(text)) return options[Number(text) - 1] ?? null;
  return options.find((o) => normalize(o.title) === text) ?? null;
}
