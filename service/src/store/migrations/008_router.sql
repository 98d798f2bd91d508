-- The router: areas (teams with their own webhook), per-conversation routing state, and an
-- ordered outbox of events to forward to each area (Standard Webhooks), with every attempt.

CREATE TABLE areas (
  id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  name           text NOT NULL,
  webhook_url    text NOT NULL,
  -- Null: every channel / every event type.
  channel_ids    bigint[],
  events         text[],
  -- { timeZone, intervals: [{ day, from, to }], awayMessage }
  hours          jsonb,
  -- Set when the receiver answered 410 Gone (or by the API): nothing is delivered until cleared.
  disabled_at    timestamptz,
  disabled_reason text,
  created_at     timestamptz NOT NULL DEFAULT now(),
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Signing secrets. A rotation adds a row and gives the older ones an expiry: until then
-- deliveries carry one signature per live secret.
CREATE TABLE area_secrets (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  area_id    bigint NOT NULL REFERENCES areas (id) ON DELETE CASCADE,
  secret     text NOT NULL,
  expires_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX area_secrets_area_idx ON area_secrets (area_id);

-- Where a conversation stands. No row: it has never met the router (the menu starts).
CREATE TABLE conversation_routes (
  conversation_id bigint PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
  state           text NOT NULL CHECK (state IN ('menu', 'assigned', 'closed')),
  area_id         bigint REFERENCES areas (id) ON DELETE SET NULL,
  assigned_at     timestamptz,
  assigned_by     text CHECK (assigned_by IN ('menu', 'api')),
  updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX conversation_routes_area_idx ON conversation_routes (area_id) WHERE state = 'assigned';

-- Events to forward, in order per conversation. `webhook_id` is the receiver's idempotency
-- key and never changes; `body` is fixed at the first attempt so retries sign the same bytes.
CREATE TABLE forward_events (
  id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  webhook_id      text NOT NULL UNIQUE DEFAULT 'msg_' || replace(gen_random_uuid()::text, '-', ''),
  area_id         bigint NOT NULL REFERENCES areas (id) ON DELETE CASCADE,
  -- Null for events outside any conversation (ping).
  conversation_id bigint,
  type            text NOT NULL,
  message_id      bigint,
  -- Order within the conversation: (sort_at, sort_seq, id). sort_at is the message's (or
  -- status's) own time but never before the assignment (Meta's timestamps are whole seconds,
  -- a message may look older than the hand-off it follows); sort_seq, its own time, orders
  -- the messages that assignment time gathered. Webhooks stored a moment apart by concurrent
  -- workers still leave in the customer's order.
  sort_at         timestamptz NOT NULL DEFAULT now(),
  sort_seq        timestamptz NOT NULL DEFAULT '-infinity',
  data            jsonb,
  body            text,
  status          text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'succeeded', 'dead')),
  attempts        integer NOT NULL DEFAULT 0,
  next_attempt_at timestamptz NOT NULL DEFAULT now(),
  -- A worker's lease: a killed worker's claim expires and another worker takes the event.
  locked_until    timestamptz,
  last_status     integer,
  last_error      text,
  created_at      timestamptz NOT NULL DEFAULT now(),
  finished_at     timestamptz
);
-- The head of each conversation's queue, and the due events.
CREATE INDEX forward_events_pending_conv_idx ON forward_events (conversation_id, sort_at, sort_seq, id) WHERE status = 'pending';
CREATE INDEX forward_events_due_idx ON forward_events (next_attempt_at) WHERE status = 'pending';
CREATE INDEX forward_events_area_idx ON forward_events (area_id, id DESC);

CREATE TABLE forward_attempts (
  id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  event_id     bigint NOT NULL REFERENCES forward_events (id) ON DELETE CASCADE,
  area_id      bigint NOT NULL,
  attempted_at timestamptz NOT NULL DEFAULT now(),
  status_code  integer,
  latency_ms   integer NOT NULL,
  error        text,
  response     text
);
CREATE INDEX forward_attempts_event_idx ON forward_attempts (event_id, id);

-- Inbound messages and statuses of assigned conversations enter the outbox in the same
-- transaction that stores them: a crash between storing and forwarding cannot lose one,
-- and ingest needs no extra round trip. Statement-level, so a bulk insert costs one join.
CREATE FUNCTION router_forward_messages() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO forward_events (area_id, conversation_id, type, message_id, sort_at, sort_seq)
  SELECT r.area_id, n.conversation_id, 'message.received', n.id, GREATEST(n.wa_timestamp, r.assigned_at), n.wa_timestamp
  FROM new_rows n
  JOIN conversation_routes r ON r.conversation_id = n.conversation_id AND r.state = 'assigned'
  JOIN areas a ON a.id = r.area_id
  WHERE n.direction = 'inbound' AND n.source = 'live'
    AND (a.events IS NULL OR 'message.received' = ANY (a.events))
    AND (a.channel_ids IS NULL OR n.channel_id = ANY (a.channel_ids))
  ORDER BY n.conversation_id, n.wa_timestamp, n.id;
  RETURN NULL;
END $$;
CREATE TRIGGER router_forward_messages AFTER INSERT ON messages
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION router_forward_messages();

CREATE FUNCTION router_forward_statuses() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO forward_events (area_id, conversation_id, type, message_id, sort_at, sort_seq, data)
  -- Statuses of one second (sent, delivered, read often are) keep their rank's order.
  SELECT r.area_id, m.conversation_id, 'message.status', m.id, GREATEST(n.wa_timestamp, r.assigned_at) + n.status_rank * interval '1 microsecond',
         n.wa_timestamp + n.status_rank * interval '1 microsecond',
         jsonb_build_object('status', n.status, 'timestamp', n.wa_timestamp)
  FROM new_rows n
  JOIN messages m ON m.wamid = n.wamid
  JOIN conversation_routes r ON r.conversation_id = m.conversation_id AND r.state = 'assigned'
  JOIN areas a ON a.id = r.area_id
  WHERE n.status_rank >= 0
    AND (a.events IS NULL OR 'message.status' = ANY (a.events))
    AND (a.channel_ids IS NULL OR m.channel_id = ANY (a.channel_ids))
  ORDER BY m.conversation_id, n.wa_timestamp, n.status_rank, n.id;
  RETURN NULL;
END $$;
CREATE TRIGGER router_forward_statuses AFTER INSERT ON message_statuses
  REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION router_forward_statuses();
