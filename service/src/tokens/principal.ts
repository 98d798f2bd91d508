// Who a request acts for: the bootstrap API_TOKEN (admin, every area) or a scoped token.
import type { IncomingMessage } from 'node:http';

export const SCOPES = ['admin', 'messages:send', 'conversations:read', 'conversations:write'] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  /** Null for the bootstrap API_TOKEN. */
  readonly tokenId: number | null;
  readonly scopes: ReadonlySet<Scope>;
  /** Null: every area. Otherwise only conversations assigned to one of these areas. */
  readonly areaIds: readonly number[] | null;
  /** When the token stops working (epoch ms), or null. */
  readonly expiresAt: number | null;
  /**
   * Set when the token was not looked up for this request (the process saw it live before):
   * the route's statement must answer only while it is still live (`tokenLive`), and the route
   * must refuse the request with 401 when it is not (see foldsLiveness).
   */
  readonly livenessOwed?: true;
}

export const BOOTSTRAP: Principal = Object.freeze({ tokenId: null, scopes: new Set<Scope>(['admin']), areaIds: null, expiresAt: null });

const principals = new WeakMap<IncomingMessage, Principal>();

export function setPrincipal(req: IncomingMessage, p: Principal): void {
  principals.set(req, p);
}

export function principalOf(req: IncomingMessage): Principal | null {
  return principals.get(req) ?? null;
}

/** `admin` holds every scope. */
export const hasScope = (p: Principal, scope: Scope): boolean => p.scopes.has('admin') || p.scopes.has(scope);

/** The areas a request is limited to, or null when it sees every area. */
export const areaLimit = (req: IncomingMessage): readonly number[] | null => principalOf(req)?.areaIds ?? null;

/**
 * The scope a /v1 route needs (path relative to /v1). What is not listed needs `admin`
 * (areas, menus, channels, dead letters, tokens, queues), so a new route is closed by default.
 */
const RULES: readonly (readonly [method: string, path: RegExp, scope: Scope])[] = [
  ['POST', /^\/messages\/?$/, 'messages:send'],
  ['POST', /^\/media\/?$/, 'messages:send'],
  ['GET', /^\/media\/[^/]+\/?$/, 'conversations:read'],
  ['GET', /^\/messages(\/[^/]+)?\/?$/, 'conversations:read'],
  ['GET', /^\/conversations(\/[^/]+(\/messages)?)?\/?$/, 'conversations:read'],
  ['GET', /^\/events\/?$/, 'conversations:read'],
  ['PATCH', /^\/conversations\/[^/]+\/?$/, 'conversations:write'],
  ['POST', /^\/conversations\/[^/]+\/(read|assign|release)\/?$/, 'conversations:write'],
];

/**
 * The routes that check the token's liveness in their own statement, sparing a round trip: the
 * inbox list and a conversation's messages (scope `conversations:read`), the pages agents poll
 * most. `url` is the full URL.
 */
export const foldsLiveness = (method: string, url: string): boolean => (method === 'GET' || method === 'HEAD') && /^\/v1\/conversations(\/\d+\/messages)?\/?(\?|$)/.test(url);

export function scopeFor(method: string, path: string): Scope {
  const m = method === 'HEAD' ? 'GET' : method;
  return RULES.find(([rm, rp]) => rm === m && rp.test(path))?.[2] ?? 'admin';
}
