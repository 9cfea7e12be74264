-- Erasure (issue 19, docs: the erasure contract): the customers whose personal data was erased
-- (intake's CustomerErased, with the phone-only files it merged), so that an event about them
-- that occurred at or before `erased_at` (a replay, a late delivery) files and sends nothing.
CREATE TABLE erased_customers (
    customer_id text        PRIMARY KEY,
    erasure_id  text        NOT NULL,
    erased_at   timestamptz NOT NULL
);

-- The consent log stays append-only, with one exception: an erased customer's entry may lose its
-- free-text reason (set to NULL, every other column unchanged). Who, which channel, granted and
-- when stay. The function keeps the migration's search_path (the service's schema).
CREATE OR REPLACE FUNCTION consent_log_append_only() RETURNS trigger LANGUAGE plpgsql
SET search_path FROM CURRENT AS $$
BEGIN
    IF TG_OP = 'UPDATE' AND NEW.reason IS NULL
       AND (NEW.entry_id, NEW.customer_id, NEW.channel, NEW.granted, NEW.changed_at, NEW.changed_by, NEW.source,
            NEW.event_id, NEW.recorded_at)
           IS NOT DISTINCT FROM (OLD.entry_id, OLD.customer_id, OLD.channel, OLD.granted, OLD.changed_at,
                                 OLD.changed_by, OLD.source, OLD.event_id, OLD.recorded_at)
       AND EXISTS (SELECT 1 FROM erased_customers e WHERE e.customer_id = OLD.customer_id) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'consent_log is append-only: % is refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
