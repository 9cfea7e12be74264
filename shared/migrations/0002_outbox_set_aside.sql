-- An outbox row the broker can never take (a record over the topic's size limit) is set aside
-- with the reason instead of blocking every row after it; `aftersales_outbox_set_aside_total`
-- and the relay's error log say so, and the row stays here to be inspected.
ALTER TABLE outbox ADD COLUMN failed_at timestamptz, ADD COLUMN error text;
DROP INDEX outbox_unpublished;
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL AND failed_at IS NULL;
