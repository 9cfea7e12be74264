-- One conversation per customer (docs/followup.md "One conversation per customer"): the customer's
-- follow-ups due in the same days are claimed together under one call id and recorded once.
-- Numbered 0011 so that other work on this schema may take 0008-0010.

ALTER TABLE followups ADD COLUMN call_id text;          -- the claim's call: shared by the follow-ups claimed together
ALTER TABLE call_attempts ADD COLUMN call_id text;      -- the call an attempt was recorded on (NULL: recorded alone)

CREATE TABLE conversation_calls (
    call_id      text PRIMARY KEY,
    customer_id  text        NOT NULL,
    agent_id     text        NOT NULL,
    called_at    timestamptz NOT NULL,
    followup_ids text[]      NOT NULL,   -- each has its attempt (call_attempts.call_id = call_id)
    outcomes     jsonb       NOT NULL    -- {followup_id: outcome}
);
CREATE INDEX conversation_calls_customer ON conversation_calls (customer_id, called_at);
CREATE INDEX followups_open_customer ON followups (customer_id) WHERE status IN ('scheduled', 'due');
