-- The relay deletes the rows it has published (the log is the record of what was published):
-- a row is written once and deleted once, instead of inserted, marked and purged later. What
-- is left in the outbox is what is still to publish, and the rows set aside (failed_at).
-- Consumers recognise a repeated event_id in their inbox, so the outbox needs no unique index.
DELETE FROM outbox WHERE published_at IS NOT NULL;
DROP INDEX IF EXISTS outbox_unpublished;
DROP INDEX IF EXISTS outbox_published_at;
ALTER TABLE outbox DROP CONSTRAINT IF EXISTS outbox_event_id_key;
ALTER TABLE outbox DROP COLUMN published_at;
