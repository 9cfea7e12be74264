-- Return visits and the agents' phone register (work plan: "tracking service", "phone records").

CREATE TABLE followups (
    followup_id      text PRIMARY KEY,
    kind             text        NOT NULL,
    customer_id      text        NOT NULL,
    vin              text,
    dealer_id        text,
    region           text,
    campaign_id      text,
    complaint_id     text,
    reason_event_id  text        NOT NULL,
    due_from         timestamptz NOT NULL,
    due_by           timestamptz NOT NULL,
    priority         int         NOT NULL DEFAULT 50,
    timezone         text        NOT NULL DEFAULT 'Asia/Shanghai',
    status           text        NOT NULL DEFAULT 'scheduled',  -- scheduled, due, completed, expired, cancelled
    overdue_at       timestamptz,
    escalated_at     timestamptz,
    attempts         int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    claimed_by       text,
    claim_expires_at timestamptz,
    outcome          text,
    satisfaction     int,
    completed_at     timestamptz,
    under_warranty   boolean,
    event_at         timestamptz NOT NULL,  -- when the reason happened (pickup, resolution …)
    created_at       timestamptz NOT NULL
);
CREATE INDEX followups_open ON followups (status, due_by) WHERE status IN ('scheduled', 'due');
CREATE INDEX followups_customer ON followups (customer_id);
CREATE INDEX followups_kind_event ON followups (kind, event_at);
