-- forward_events_pending_conv_area_idx (010) served the claims of the versions before 017;
-- the claims, the runs behind each head and the re-find of a head all name both the area and
-- the conversation, which forward_events_pending_area_conv_idx (017) serves as well. Kept
-- only for a rolling deploy from those versions, it cost every queued event one more index
-- entry (and its WAL), and its removal at delivery.
DROP INDEX forward_events_pending_conv_area_idx;
