-- Scoped API tokens. Only the SHA-256 of a token is kept: the token itself is shown once, at
-- creation. A revoked token keeps its row (who had access, until when) and never authenticates.
CREATE TABLE api_tokens (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name         text NOT NULL,
  token_hash   bytea NOT NULL UNIQUE,
  -- The token's first characters, to tell tokens apart in a list without revealing them.
  prefix       text NOT NULL,
  scopes       text[] NOT NULL,
  -- Null: every area. Otherwise only conversations routed to these areas.
  area_ids     bigint[],
  expires_at   timestamptz,
  last_used_at timestamptz,
  revoked_at   timestamptz,
  created_at   timestamptz NOT NULL DEFAULT now()
);
