-- Media: one row per (channel, Meta media id) to download into object storage, whatever path
-- stored the message (live webhook, echo, a history placeholder that later got its id), and
-- one per file uploaded through POST /v1/media. Objects are keyed by SHA-256: the same bytes
-- are kept once.

CREATE TABLE media (
  id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  channel_id    bigint NOT NULL REFERENCES channels (id),
  -- Meta's id: of an inbound media, or of an upload once Meta accepted it.
  meta_id       text,
  origin        text NOT NULL CHECK (origin IN ('inbound', 'upload')),
  -- `live` media run before `history` ones.
  live          boolean NOT NULL DEFAULT true,
  type          text NOT NULL,
  status        text NOT NULL DEFAULT 'pending' CHECK (status IN ('pending', 'stored', 'failed')),
  storage_key   text,
  size          bigint,
  mime_type     text,
  sha256        text,
  filename      text,
  error_code    text,
  error_reason  text,
  enqueued_at   timestamptz,
  stored_at     timestamptz,
  created_at    timestamptz NOT NULL DEFAULT now(),
  updated_at    timestamptz NOT NULL DEFAULT now(),
  UNIQUE (channel_id, meta_id)
);
CREATE INDEX media_to_enqueue_idx ON media (id) WHERE status = 'pending' AND origin = 'inbound';
CREATE INDEX media_sha256_idx ON media (sha256) WHERE status = 'stored';
-- A stored or failed media names its messages (the `message.media` event).
CREATE INDEX messages_media_idx ON messages (channel_id, media_id) WHERE media_id IS NOT NULL;

-- A trigger, not code in each store path: live, echo, history and history placeholders filled
-- later all write messages.media_id, and each must get its download.
CREATE FUNCTION media_from_message() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  INSERT INTO media (channel_id, meta_id, origin, live, type, mime_type, filename)
  VALUES (NEW.channel_id, NEW.media_id, 'inbound', NEW.source <> 'history', NEW.type, NEW.media_mime_type, NEW.media_filename)
  ON CONFLICT (channel_id, meta_id) DO NOTHING;
  RETURN NULL;
END $$;

CREATE TRIGGER messages_media_insert AFTER INSERT ON messages FOR EACH ROW
  WHEN (NEW.media_id IS NOT NULL AND NEW.source <> 'api')
  EXECUTE FUNCTION media_from_message();
CREATE TRIGGER messages_media_update AFTER UPDATE OF media_id ON messages FOR EACH ROW
  WHEN (NEW.media_id IS NOT NULL AND OLD.media_id IS DISTINCT FROM NEW.media_id AND NEW.source <> 'api')
  EXECUTE FUNCTION media_from_message();

-- Media received before this migration gets its download too (behind live media). One statement:
-- the triggers above cover every row written from here on, under the same migration lock.
INSERT INTO media (channel_id, meta_id, origin, live, type, mime_type, filename)
SELECT DISTINCT ON (channel_id, media_id) channel_id, media_id, 'inbound', false, type, media_mime_type, media_filename
  FROM messages
 WHERE media_id IS NOT NULL AND source <> 'api'
 ORDER BY channel_id, media_id, id
ON CONFLICT (channel_id, meta_id) DO NOTHING;
