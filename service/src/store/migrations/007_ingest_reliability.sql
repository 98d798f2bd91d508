-- Each history chunk delivery (a webhook body and the chunk's place in it) counted once in
-- sync_runs.chunks_received, however often a job retries it.
CREATE TABLE sync_chunk_deliveries (
  channel_id  bigint NOT NULL REFERENCES channels (id),
  delivery    bytea NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (channel_id, delivery)
);
