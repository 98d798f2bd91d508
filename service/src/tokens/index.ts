// Scoped API tokens: what app.ts wires. `identify` runs first on /v1 and /admin (the rate
// limiter reads its answer), `require` refuses after the limiter: 401 without a valid token,
// 403 without the route's scope.
import type { IncomingMessage } from 'node:http';
import type { RequestHandler, Router } from 'express';
import type { Publish } from '../events/hub.js';
import type { Logger } from '../log.js';
import { assignedAreas } from '../store/conversations.js';
import type { Pool } from '../store/pool.js';
import { TokenAuth } from './auth.js';
import type { Principal, Scope } from './principal.js';
import { tokenRoutes } from './routes.js';
import { liveTokenIds } from './store.js';
import type { AreasOf } from '../http/routes/events.js';

export interface TokensFeature {
  identify(opts?: { allowQuery?: boolean }): RequestHandler;
  require(scope?: Scope): RequestHandler;
  /** For WebSocket upgrades, which bypass express. */
  authorize(req: IncomingMessage): Promise<Principal | null>;
  /** Which area each conversation is assigned to: events for area-limited streams. */
  readonly areasOf: AreasOf;
  /** Which of these tokens are still live: open event streams re-check theirs. */
  liveTokens(ids: readonly number[]): Promise<ReadonlySet<number>>;
  routes(): Router;
}

export function createTokensFeature(deps: { pool: Pool; apiToken: string; publish: Publish; log: Logger }): TokensFeature {
  const auth = new TokenAuth({ pool: deps.pool, apiToken: deps.apiToken, onTouchError: (err) => deps.log.debug({ err: err.message }, 'token last use not saved') });
  return {
    identify: (opts) => auth.identify(opts),
    require: (scope) => auth.require(scope),
    authorize: (req) => auth.resolve(req, true),
    areasOf: (ids) => assignedAreas(deps.pool, ids),
    liveTokens: (ids) => liveTokenIds(deps.pool, ids),
    routes: () => tokenRoutes({ pool: deps.pool, publish: deps.publish }),
  };
}
