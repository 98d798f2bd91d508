// The menu state machine. After a batch of inbound messages is stored, each conversation
// that is not assigned moves through its menu: greeting and menu, sub-menus, an area. Runs
// once per stored batch (one query for the whole batch; none when no channel has a menu),
// serialized per conversation by a row lock, so two workers never answer the same message.
import type { Logger } from '../../log.js';
import type { InboundStoreResult } from '../../store/inbound-store.js';
import { withTransaction, type Pool, type PoolClient } from '../../store/pool.js';
import type { BusinessHours } from '../areas/schema.js';
import type { RouterMetrics } from '../metrics.js';
import { matchOption, normalize } from '../menus/match.js';
import { interactiveFor, levelAt, type Level } from '../menus/render.js';
import type { MenuCache } from '../menus/store.js';
import type { LoopGuard } from './anti-loop.js';
import { assignConversation } from './assignments.js';
import type { CachedRoute, RouteCache } from './route-cache.js';
import { isOpen } from './hours.js';

/** An automated message for one customer; `send` persists it first and enqueues it (the API's path). */
export interface BotMessage {
  readonly channelId: number;
  readonly to: string;
  readonly toUserId: boolean;
  readonly type: 'text' | 'interactive';
  readonly preview: string;
  readonly content: Record<string, unknown>;
}

export interface EngineDeps {
  readonly pool: Pool;
  readonly log: Logger;
  readonly metrics: RouterMetrics;
  readonly menus: MenuCache;
  readonly guard: LoopGuard;
  readonly routes: RouteCache;
  /** Returns the new message's id. */
  readonly send: (m: BotMessage) => Promise<number>;
}

type Inbound = {
  id: number; conversation_id: number; channel_id: number; type: string; body: string | null; interactive_reply_id: string | null;
  context_message_id: number | null; wa_timestamp: Date; wa_id: string; user_id: string | null;
  /** Whether the menu answers it: a live customer message of the last 24 hours. */
  answerable: boolean; route_version: string | null; route_area_id: number | null;
  /** Handled by an earlier pass (decide marks it under the conversation's lock). */
  routed: boolean;
};

type Reply = { kind: 'menu' | 'invalid' | 'stale' | 'away'; level?: Level; text: string; buttonLabel?: string };

// Reactions and system notices are not answers to a menu.
const IGNORED_TYPES = new Set(['reaction', 'system', 'unsupported', 'errors', 'request_welcome']);

export class RoutingEngine {
  private readonly chains = new Map<number, Promise<void>>();

  constructor(private readonly d: EngineDeps) {}

  /** The inbound path's hook: never throws, never delays the batch. */
  onStored(result: Pick<InboundStoreResult, 'storedMessages'>): void {
    if (result.storedMessages.length === 0) return;
    void this.route(result.storedMessages).catch((err: Error) => this.d.log.warn({ err: err.message }, 'router: batch not routed'));
  }

  /**
   * Routes a stored batch; resolves when every conversation in it has been handled. Assigned
   * conversations, known from the route cache, cost no query; the others are read in one.
   * At least once and idempotent: a message already handled (a retried or redelivered batch)
   * is skipped, so its answers are never sent twice.
   */
  async route(stored: readonly { id: number; conversationId: number; channelId: number }[]): Promise<void> {
    let menus = await this.d.menus.current();
    let candidates = stored.filter((m) => menus.has(m.channelId));
    if (candidates.length === 0) return;
    const cached = await this.d.routes.read([...new Set(candidates.map((m) => m.conversationId))]);
    if (cached) {
      this.d.menus.observe(cached.menusStamp);
      menus = await this.d.menus.current();
      candidates = candidates.filter((m) => menus.has(m.channelId) && typeof cached.routes.get(m.conversationId) !== 'number');
    }
    if (candidates.length === 0) return;
    const { rows } = await this.d.pool.query<Inbound>(
      `SELECT m.id, m.conversation_id, m.channel_id, m.type, m.body, m.interactive_reply_id, m.wa_timestamp, m.routed, c.wa_id, c.user_id,
              (SELECT cm.id FROM messages cm WHERE cm.wamid = m.reply_to_wamid) AS context_message_id,
              m.direction = 'inbound' AND m.source = 'live' AND m.wa_timestamp > now() - interval '24 hours' AS answerable,
              CASE WHEN r.conversation_id IS NULL THEN 0 ELSE r.version END AS route_version,
              CASE WHEN r.state = 'assigned' THEN r.area_id END AS route_area_id
       FROM messages m JOIN contacts c ON c.id = m.contact_id
       LEFT JOIN conversation_routes r ON r.conversation_id = m.conversation_id
       WHERE m.id = ANY ($1::bigint[])
       ORDER BY m.conversation_id, m.wa_timestamp, m.id`,
      [candidates.map((m) => m.id)],
    );
    const fills = new Map<number, CachedRoute>();
    const byConversation = new Map<number, Inbound[]>();
    for (const r of rows) {
      fills.set(r.conversation_id, { conversationId: r.conversation_id, version: Number(r.route_version), areaId: r.route_area_id });
      if (r.routed || !r.answerable || r.route_area_id !== null || IGNORED_TYPES.has(r.type)) continue;
      byConversation.set(r.conversation_id, [...(byConversation.get(r.conversation_id) ?? []), r]);
    }
    // Without a generation read before Postgres (Redis away then) a fill could outlive a void.
    if (cached) await this.d.routes.fill([...fills.values()], cached.gen);
    await Promise.all([...byConversation].map(([id, msgs]) => this.serialized(id, () => this.conversation(id, msgs))));
  }

  // In-process ordering per conversation; the row lock orders it across processes.
  private serialized(id: number, fn: () => Promise<void>): Promise<void> {
    const next = (this.chains.get(id) ?? Promise.resolve()).then(fn).catch((err: Error) => this.d.log.warn({ conversationId: id, err: err.message }, 'router: conversation not routed'));
    this.chains.set(id, next);
    void next.finally(() => {
      if (this.chains.get(id) === next) this.chains.delete(id);
    });
    return next;
  }

  private async conversation(conversationId: number, msgs: Inbound[]): Promise<void> {
    const first = msgs[0]!;
    const { replies, assigned } = await withTransaction(this.d.pool, (c) => this.decide(c, conversationId, first.channel_id, msgs));
    if (assigned) await this.d.routes.changed([assigned]);
    if (replies.length === 0) return;
    const to = { channelId: first.channel_id, to: first.wa_id, toUserId: first.user_id !== null && first.user_id === first.wa_id };
    let menuMessageId: number | null = null;
    let limited = false;
    for (const r of replies) {
      if (!(await this.d.guard.take(conversationId))) {
        this.d.metrics.loopLimited.inc();
        limited = true;
        continue;
      }
      const id = await this.d.send(
        r.level
          ? { ...to, type: 'interactive', preview: r.text, content: interactiveFor(r.level, r.text, r.buttonLabel ?? 'Options') }
          : { ...to, type: 'text', preview: r.text, content: { body: r.text } },
      );
      this.d.metrics.botReplies.inc({ kind: r.kind });
      if (r.level) menuMessageId = id;
    }
    if (menuMessageId !== null || limited) {
      await this.d.pool.query(
        `UPDATE conversation_routes SET menu_message_id = COALESCE($2, menu_message_id),
                loop_limited_at = CASE WHEN $3 THEN now() ELSE loop_limited_at END, updated_at = now()
         WHERE conversation_id = $1`,
        [conversationId, menuMessageId, limited],
      );
    }
  }

  /** Moves the conversation through its messages; returns the replies to send after commit, and the assignment if it made one. */
  private async decide(c: PoolClient, conversationId: number, channelId: number, msgs: Inbound[]): Promise<{ replies: Reply[]; assigned?: CachedRoute }> {
    await c.query("INSERT INTO conversation_routes (conversation_id, state) VALUES ($1, 'menu') ON CONFLICT (conversation_id) DO NOTHING", [conversationId]);
    const { rows } = await c.query<{ state: string; menu_version: number | null; menu_node: string | null; invalid_count: number; last_answer_at: Date | null; menu_message_id: number | null; menu_started_at: Date | null }>(
      `SELECT state, menu_version, menu_node, invalid_count, last_answer_at, menu_message_id, menu_started_at
       FROM conversation_routes WHERE conversation_id = $1 FOR UPDATE`,
      [conversationId],
    );
    const r = rows[0]!;
    if (r.state === 'assigned') return { replies: [] };
    // Under the conversation's lock: a message another pass handled meanwhile is left to it.
    const mine = await c.query<{ id: string }>('UPDATE messages SET routed = true WHERE id = ANY ($1::bigint[]) AND NOT routed RETURNING id', [msgs.map((m) => m.id)]);
    const unhandled = new Set(mine.rows.map((m) => Number(m.id)));
    msgs = msgs.filter((m) => unhandled.has(Number(m.id)));
    if (msgs.length === 0) return { replies: [] };
    let version = r.state === 'menu' ? r.menu_version : null;
    let node = r.menu_node;
    let invalid = r.invalid_count;
    let lastAnswer = r.last_answer_at;
    // When this menu session began (its greeting's message time): not the last answer's, since a
    // message sent during the menu may have its pass after the answer to a later one. (A session
    // begun before 032 has none: its last answer, as before.)
    let since = r.menu_started_at ?? r.last_answer_at;
    const replies: Reply[] = [];
    let assignTo: number | null = null;
    // The answer that chose the area, and the messages of this pass after it: they are the area's.
    let chose: Inbound | null = null;
    let rest: Inbound[] = [];
    const latest = (await this.d.menus.current()).get(channelId);
    for (const [i, m] of msgs.entries()) {
      let menu = version !== null ? await this.d.menus.version(channelId, version) : null;
      const timedOut = menu !== null && lastAnswer !== null && m.wa_timestamp.getTime() - lastAnswer.getTime() > menu.timeoutSeconds * 1000;
      lastAnswer = m.wa_timestamp;
      if (menu === null || timedOut) {
        if (!latest) return { replies: [] };
        since = m.wa_timestamp;
        ({ version, menu } = latest);
        node = null;
        invalid = 0;
        replies.push({ kind: 'menu', level: levelAt(menu, null)!, text: menu.greeting, buttonLabel: menu.buttonLabel });
        continue;
      }
      const level = levelAt(menu, node) ?? levelAt(menu, null)!;
      const text = m.type === 'text' ? m.body : null;
      const replyId = m.type === 'interactive' || m.type === 'button' ? m.interactive_reply_id : null;
      const said = text !== null ? normalize(text) : null;
      if (said !== null && menu.restartWords.some((w) => normalize(w) === said)) {
        node = null;
        invalid = 0;
        replies.push({ kind: 'menu', level: levelAt(menu, null)!, text: menu.greeting, buttonLabel: menu.buttonLabel });
        continue;
      }
      if (said === '0') {
        node = level.parent;
        invalid = 0;
        const back = levelAt(menu, node)!;
        replies.push({ kind: 'menu', level: back, text: back.body, buttonLabel: menu.buttonLabel });
        continue;
      }
      // A tap on one of our messages other than the last menu sent: never route by a stale choice.
      // (A context we do not know yet is the current menu, whose wamid is still on its way.)
      if (replyId !== null && m.context_message_id !== null && r.menu_message_id !== null && m.context_message_id !== r.menu_message_id && replies.length === 0) {
        replies.push({ kind: 'stale', level, text: level.body, buttonLabel: menu.buttonLabel });
        continue;
      }
      const option = matchOption(level.options, { replyId, text });
      if (!option) {
        invalid++;
        if (invalid >= menu.maxInvalid) {
          invalid = 0;
          if (menu.fallbackAreaId !== undefined) {
            assignTo = menu.fallbackAreaId;
            chose = m;
            rest = msgs.slice(i + 1);
            break;
          }
          node = null;
          replies.push({ kind: 'menu', level: levelAt(menu, null)!, text: menu.greeting, buttonLabel: menu.buttonLabel });
        } else {
          replies.push({ kind: 'invalid', level, text: menu.invalidReply, buttonLabel: menu.buttonLabel });
        }
        continue;
      }
      invalid = 0;
      if (option.options) {
        node = option.id;
        const sub = levelAt(menu, node)!;
        replies.push({ kind: 'menu', level: sub, text: sub.body, buttonLabel: menu.buttonLabel });
        continue;
      }
      assignTo = option.areaId!;
      chose = m;
      rest = msgs.slice(i + 1);
      break;
    }
    await c.query(
      'UPDATE conversation_routes SET menu_version = $2, menu_node = $3, invalid_count = $4, last_answer_at = $5, menu_started_at = $6, updated_at = now() WHERE conversation_id = $1',
      [conversationId, version, node, invalid, lastAnswer, since],
    );
    if (assignTo === null) return { replies };
    const area = await c.query<{ hours: BusinessHours | null }>('SELECT hours FROM areas WHERE id = $1', [assignTo]);
    if (!area.rows[0]) {
      this.d.log.warn({ conversationId, areaId: assignTo }, 'router: the menu names a deleted area; the conversation stays in the menu');
      return { replies };
    }
    const { cached } = await assignConversation(this.d.pool, conversationId, assignTo, 'menu', c);
    await this.forwardAfterChoice(c, conversationId, assignTo, chose!, since ?? chose!.wa_timestamp, rest);
    const hours = area.rows[0].hours;
    if (hours && !isOpen(hours, new Date())) replies.push({ kind: 'away', text: hours.awayMessage });
    return { replies, assigned: cached };
  }

  /**
   * Queues for the chosen area every customer message the menu has not handled, stored since the
   * choosing answer or sent during this menu session (from `since`): the rest of this pass, those
   * stored while the assignment commits (their store's trigger saw the conversation unassigned,
   * their pass will see it assigned), and those whose pass is late (another worker's, or this
   * one's still reading): they would find the conversation assigned and be skipped.
   * Under the conversation's order lock, held exclusively since assignConversation locked the
   * conversation (032_router_forward_after_choice.sql): a
   * store that took it first has committed, and this statement sees its messages; a store taking
   * it after waits for this commit, and its trigger queues them. Each message once, in order.
   * The unhandled ones are marked routed, so a later assignment never queues them again.
   */
  private async forwardAfterChoice(c: PoolClient, conversationId: number, areaId: number, chose: Inbound, since: Date, rest: readonly Inbound[]): Promise<void> {
    await c.query(
      `WITH later AS (
         UPDATE messages m SET routed = true
         WHERE m.conversation_id = $1 AND m.direction = 'inbound' AND m.source = 'live' AND NOT m.routed
           AND (m.id > $3 OR m.wa_timestamp >= $4)
         RETURNING m.id, m.channel_id, m.wa_timestamp
       ), picked AS (
         SELECT id, channel_id, wa_timestamp FROM later
         UNION ALL
         SELECT m.id, m.channel_id, m.wa_timestamp FROM messages m WHERE m.id = ANY ($5::bigint[])
       )
       INSERT INTO forward_events (area_id, conversation_id, type, message_id, sort_at, sort_seq)
       SELECT a.id, $1, 'message.received', p.id, GREATEST(p.wa_timestamp, r.assigned_at), p.wa_timestamp
       FROM picked p CROSS JOIN areas a JOIN conversation_routes r ON r.conversation_id = $1
       WHERE a.id = $2 AND a.disabled_at IS NULL AND (a.events IS NULL OR 'message.received' = ANY (a.events))
         AND (a.channel_ids IS NULL OR p.channel_id = ANY (a.channel_ids))
       ORDER BY p.wa_timestamp, p.id
       FOR KEY SHARE OF a`,
      [conversationId, areaId, chose.id, since, rest.map((m) => m.id)],
    );
  }
}
