// Menus per channel, versioned; the latest versions are cached in each process so that
// routing a stored batch needs no query when no channel has a menu. A save bumps a stamp in
// Redis that routing reads with each batch (observe()), so a saved menu applies at once where
// menus are in use, and within the cache time elsewhere.
import type { Pool } from '../../store/pool.js';
import type { Menu } from './schema.js';

export interface MenuVersion {
  readonly channelId: number;
  readonly version: number;
  readonly menu: Menu;
  readonly createdAt: string;
}

type Row = { channel_id: number; version: number; menu: Menu; created_at: Date };
const view = (r: Row): MenuVersion => ({ channelId: r.channel_id, version: r.version, menu: r.menu, createdAt: r.created_at.toISOString() });

export async function saveMenu(pool: Pool, channelId: number, menu: Menu): Promise<MenuVersion> {
  // The primary key settles two concurrent saves: one fails and is retried by its caller.
  const { rows } = await pool.query<Row>(
    `INSERT INTO channel_menus (channel_id, version, menu)
     SELECT $1, COALESCE(max(version), 0) + 1, $2::jsonb FROM channel_menus WHERE channel_id = $1
     RETURNING *`,
    [channelId, JSON.stringify(menu)],
  );
  return view(rows[0]!);
}

export async function latestMenu(pool: Pool, channelId: number): Promise<MenuVersion | null> {
  const { rows } = await pool.query<Row>('SELECT * FROM channel_menus WHERE channel_id = $1 ORDER BY version DESC LIMIT 1', [channelId]);
  return rows[0] ? view(rows[0]) : null;
}

/** Latest and pinned versions, cached for `ttlMs` (a saved menu applies within it). */
export class MenuCache {
  private latest: { at: number; byChannel: Map<number, MenuVersion> } | undefined;
  private loading: Promise<Map<number, MenuVersion>> | undefined;
  private readonly versions = new Map<string, Menu>();
  private stamp: string | null | undefined;

  constructor(private readonly pool: Pool, private readonly ttlMs = 2_000) {}

  /** The menus' stamp as Redis has it now: a change since the last one drops the cached latest versions. */
  observe(stamp: string | null): void {
    if (this.stamp !== undefined && stamp !== this.stamp) this.latest = undefined;
    this.stamp = stamp;
  }

  async current(): Promise<Map<number, MenuVersion>> {
    if (this.latest && Date.now() - this.latest.at < this.ttlMs) return this.latest.byChannel;
    this.loading ??= (async () => {
      try {
        const { rows } = await this.pool.query<Row>('SELECT DISTINCT ON (channel_id) * FROM channel_menus ORDER BY channel_id, version DESC');
        const byChannel = new Map(rows.map((r) => [r.channel_id, view(r)]));
        this.latest = { at: Date.now(), byChannel };
        return byChannel;
      } finally {
        this.loading = undefined;
      }
    })();
    return this.loading;
  }

  /** A version a conversation is pinned to; versions never change once saved. */
  async version(channelId: number, version: number): Promise<Menu | null> {
    const key = `${channelId}:${version}`;
    const hit = this.versions.get(key);
    if (hit) return hit;
    const { rows } = await this.pool.query<Row>('SELECT * FROM channel_menus WHERE channel_id = $1 AND version = $2', [channelId, version]);
    if (!rows[0]) return null;
    this.versions.set(key, rows[0].menu);
    return rows[0].menu;
  }
}
