-- Feedback items (customer concerns): a reached return-visit call scored at or below the
-- threshold, or with a request written on it, is tracked here until the customer has the
-- answer and has confirmed it. Numbered 0005 so that other work on this schema may take 0003-0004.

CREATE TABLE feedback_items (
    item_id          text PRIMARY KEY,
    followup_id      text        NOT NULL,  -- the call's follow-up
    attempt_no       int         NOT NULL,
    customer_id      text        NOT NULL,
    vin              text,
    dealer_id        text,
    region           text,
    timezone         text        NOT NULL DEFAULT 'Asia/Shanghai',
    owner            text        NOT NULL,  -- the agent who made the call
    department       text        NOT NULL,  -- the responsible department (it gets the written notice)
    reasons          text[]      NOT NULL,  -- low_score, request
    satisfaction     int,
    requests         text,
    category         text,
    serious          boolean     NOT NULL DEFAULT false,
    complaint_ref    text,                  -- the complaint case a serious item became
    state            text        NOT NULL,  -- open, escalated, answered, closed
    closed_as        text,                  -- answered_on_call, confirmed, unconfirmed, complaint
    opened_at        timestamptz NOT NULL,
    due_at           timestamptz,           -- escalated to the supervisor then, unless answered (the deadline)
    escalated_at     timestamptz,
    answered_at      timestamptz,
    answered_by      text,
    answered_in_time boolean,
    solution         text,
    told_by          text,                  -- on_call, sms, call
    confirmation_followup_id text,
    closed_at        timestamptz,
    history          jsonb       NOT NULL DEFAULT '[]',
    correlation_id   uuid        NOT NULL,
    cause_event_id   uuid        NOT NULL   -- the call's cause: the chain every step's event joins
);
CREATE INDEX feedback_items_due ON feedback_items (due_at) WHERE state = 'open';
CREATE INDEX feedback_items_owner ON feedback_items (owner, state);
CREATE INDEX feedback_items_customer ON feedback_items (customer_id, opened_at);
CREATE INDEX feedback_items_opened ON feedback_items (opened_at);
CREATE INDEX feedback_items_confirmation ON feedback_items (confirmation_followup_id)
    WHERE confirmation_followup_id IS NOT NULL;
