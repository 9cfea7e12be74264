-- Who changed which channel of a customer's consent, when and why: every opt-out and opt-in
-- recorded here, and every change of the consent fields on the customer's file (intake's
-- CustomerRegistered / CustomerUpdated / CustomerContactCorrected). Append-only: the triggers
-- refuse UPDATE, DELETE and TRUNCATE for every role, the service's own included.
CREATE TABLE consent_log (
    entry_id    bigserial   PRIMARY KEY,
    customer_id text        NOT NULL,
    channel     text        NOT NULL,  -- sms, email, letter, all
    granted     boolean     NOT NULL,  -- false: the customer said no to the channel
    changed_at  timestamptz NOT NULL,  -- when it happened (the event's time, or the clock at the API call)
    changed_by  text        NOT NULL,  -- the person (console or API token) or the system that reported it
    reason      text,
    source      text        NOT NULL,  -- opt_out, opt_in, or the event type that carried the file's consent
    event_id    uuid,                  -- that event: a redelivery logs nothing twice
    recorded_at timestamptz NOT NULL
);
CREATE UNIQUE INDEX consent_log_once_per_event ON consent_log (event_id, channel) WHERE event_id IS NOT NULL;
CREATE INDEX consent_log_customer ON consent_log (customer_id, changed_at, entry_id);

CREATE FUNCTION consent_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'consent_log is append-only: % is refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER consent_log_no_update_or_delete BEFORE UPDATE OR DELETE ON consent_log
    FOR EACH ROW EXECUTE FUNCTION consent_log_append_only();
CREATE TRIGGER consent_log_no_truncate BEFORE TRUNCATE ON consent_log
    FOR EACH STATEMENT EXECUTE FUNCTION consent_log_append_only();
