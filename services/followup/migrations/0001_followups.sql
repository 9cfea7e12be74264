-- Return visits, the agents' phone register and letter register, and the projections of other
-- services' events that follow-up needs (it never reads another service's schema).

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
    correlation_id   uuid        NOT NULL,  -- carried by every event about this follow-up
    scheduled_event_id uuid,                -- its FollowUpScheduled: the cause of the calls' events
    due_from         timestamptz NOT NULL,
    due_by           timestamptz NOT NULL,
    priority         int         NOT NULL DEFAULT 50,
    timezone         text        NOT NULL DEFAULT 'Asia/Shanghai',
    status           text        NOT NULL DEFAULT 'scheduled',  -- scheduled, due, completed, expired
    overdue_at       timestamptz,
    escalated_at     timestamptz,
    attempts         int         NOT NULL DEFAULT 0,
    unreachable      int         NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz,
    claimed_by       text,
    claim_expires_at timestamptz,
    outcome          text,
    satisfaction     int,
    satisfied        boolean,
    completed_at     timestamptz,
    completed_by     text,
    mileage_km       int,
    under_warranty   boolean,
    event_at         timestamptz NOT NULL,  -- when the reason happened (pickup, resolution …)
    created_at       timestamptz NOT NULL
);
CREATE INDEX followups_open ON followups (due_by) WHERE status IN ('scheduled', 'due');
CREATE INDEX followups_customer ON followups (customer_id, created_at);
CREATE INDEX followups_kind_event ON followups (kind, event_at);
CREATE INDEX followups_completed ON followups (completed_at) WHERE completed_at IS NOT NULL;
CREATE INDEX followups_complaint ON followups (complaint_id) WHERE complaint_id IS NOT NULL;

-- The phone register: every call attempt.
CREATE TABLE call_attempts (
    attempt_id     text PRIMARY KEY,
    followup_id    text        NOT NULL REFERENCES followups (followup_id),
    customer_id    text        NOT NULL,
    kind           text        NOT NULL,
    attempt_no     int         NOT NULL,
    agent_id       text        NOT NULL,
    attempted_at   timestamptz NOT NULL,
    outcome        text        NOT NULL,
    call_back_at   timestamptz,
    satisfaction   int,
    satisfied      boolean,
    talking_points text,
    requests       text,
    notes          text,
    categories     text[]      NOT NULL DEFAULT '{}',
    complaint      jsonb,
    product_issue  jsonb,
    complaint_ref  text,
    region         text,
    dealer_id      text
);
CREATE INDEX call_attempts_customer ON call_attempts (customer_id, attempted_at);
CREATE INDEX call_attempts_agent ON call_attempts (agent_id, attempted_at);
CREATE INDEX call_attempts_time ON call_attempts (attempted_at);

-- The letter register: every notice, invitation or reply letter the follow-up work asked for.
CREATE TABLE letters_requested (
    letter_id    text PRIMARY KEY,
    followup_id  text        NOT NULL,
    customer_id  text        NOT NULL,
    kind         text        NOT NULL,  -- unreachable_notice, campaign_invitation, wrong_number_notice
    reason       text        NOT NULL,
    agent_id     text,
    requested_at timestamptz NOT NULL
);
CREATE INDEX letters_customer ON letters_requested (customer_id, requested_at);
CREATE INDEX letters_time ON letters_requested (requested_at);

-- Projections of intake's and complaints' events.
CREATE TABLE customers (
    customer_id text PRIMARY KEY,
    region      text,
    timezone    text        NOT NULL DEFAULT 'Asia/Shanghai',
    locale      text        NOT NULL DEFAULT 'zh-CN',
    updated_at  timestamptz NOT NULL
);
CREATE INDEX customers_region ON customers (region);

CREATE TABLE vehicles (
    vin             text PRIMARY KEY,
    customer_id     text,
    model           text,
    dealer_id       text,
    sold_at         timestamptz,
    warranty_months int,
    warranty_km     int,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX vehicles_customer ON vehicles (customer_id);

CREATE TABLE visits (
    repair_order_id     text PRIMARY KEY,
    vin                 text        NOT NULL,
    customer_id         text        NOT NULL,
    dealer_id           text,
    picked_up_at        timestamptz NOT NULL,
    mileage_km          int,
    next_service_due_at timestamptz,
    next_service_due_km int
);
CREATE INDEX visits_customer ON visits (customer_id, picked_up_at);
CREATE INDEX visits_vin ON visits (vin, picked_up_at);

CREATE TABLE complaints (
    complaint_id text PRIMARY KEY,
    customer_id  text,
    state        text        NOT NULL,  -- open, resolved, closed
    updated_at   timestamptz NOT NULL
);
CREATE INDEX complaints_customer ON complaints (customer_id) WHERE state <> 'closed';

CREATE TABLE campaigns (
    campaign_id  text PRIMARY KEY,
    kind         text        NOT NULL,
    title        text        NOT NULL,
    starts_at    timestamptz NOT NULL,
    ends_at      timestamptz NOT NULL,
    regions      text[]      NOT NULL,
    models       text[],
    loyal_first  boolean     NOT NULL,
    announced_at timestamptz NOT NULL
);

CREATE TABLE weekly_reports (
    week         text PRIMARY KEY,
    generated_at timestamptz NOT NULL,
    figures      jsonb       NOT NULL
);
