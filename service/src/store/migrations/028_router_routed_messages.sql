-- Whether the menu has handled an inbound message. A batch is routed after it is stored, and a
-- retried or redelivered batch is routed again (its messages are reported as stored, not only as
-- inserted by that attempt); the router marks each message it handles under the conversation's
-- routing lock and skips the marked ones, so a customer gets each answer once.
-- Rows stored before this migration were routed (or lost) by the code of their time: they read
-- as routed (a default is instant to add); new rows start unrouted.
ALTER TABLE messages ADD COLUMN routed boolean NOT NULL DEFAULT true;
ALTER TABLE messages ALTER COLUMN routed SET DEFAULT false;
