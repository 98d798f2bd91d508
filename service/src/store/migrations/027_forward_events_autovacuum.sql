-- forward_events is a queue: every delivered event leaves a dead row version and a dead entry in
-- the pending index (the finishing update changes status, which that index's predicate reads, so
-- it cannot be HOT). Those entries sort before each queue's head, so every claim's probe of a
-- queue steps over its finished events until a vacuum removes them. With the defaults a vacuum
-- waited for dead rows to reach a fifth of the table, which holds every finished event kept for
-- the deliveries list and only grows: the dead entries piled up with the history (a fed run of
-- the backlog harness read the pending index 5.7 → 14.7 pages per delivered event within 8 s).
-- A fixed number of dead rows triggers it now, whatever the table's size, and it runs with ten
-- times the default cost budget, so it keeps up with the queue's churn instead of being paced
-- behind it. (How soon after the threshold it starts is autovacuum_naptime's, a server setting.)
-- Index cleanup is forced on: by default (since Postgres 14) a vacuum skips the indexes when its
-- dead rows sit on fewer than 2 % of the table's pages, which is always so once the history is
-- large, and the dead entries would stay in the pending index the claims walk.
ALTER TABLE forward_events SET (
  autovacuum_vacuum_scale_factor = 0,
  autovacuum_vacuum_threshold = 5000,
  autovacuum_vacuum_cost_limit = 2000,
  vacuum_index_cleanup = on
);
