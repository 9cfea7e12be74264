-- A customer field's history is kept as entries once the field has held a second value; until
-- then its one entry is implicit: the current value and the earliest time it was seen. Files
-- on record have every value as an entry already: those fields count as kept.
ALTER TABLE customers
    ADD COLUMN first_seen jsonb  NOT NULL DEFAULT '{}'::jsonb,
    ADD COLUMN history_kept text[] NOT NULL DEFAULT '{}';
UPDATE customers c
   SET history_kept = coalesce((SELECT array_agg(DISTINCT h.field ORDER BY h.field)
                                  FROM customer_history h WHERE h.customer_id = c.customer_id), '{}');
