// Message status ordering. Statuses only move forward; failed is terminal.

/** Rank of each status Meta reports, plus our own `pending` for outbound rows not yet sent. */
export const STATUS_RANK = {
  received: 0,
  pending: 0,
  sent: 1,
  delivered: 2,
  read: 3,
  // A voice message the user played: it was read as well.
  played: 4,
  // Terminal, whatever arrives after it (Meta does not order webhooks).
  failed: 9,
} as const satisfies Record<string, number>;

export type MessageStatus = keyof typeof STATUS_RANK;

/** Statuses we do not know rank below everything: kept in the history, never applied. */
export function statusRank(status: string): number {
  return Object.hasOwn(STATUS_RANK, status) ? STATUS_RANK[status as MessageStatus] : -1;
}
