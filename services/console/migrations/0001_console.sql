-- The console: staff accounts, sessions and the audit log (its own records), inbound calls
-- logged at the desk, and the read model of the customers' story that it keeps from the
-- aftersales.* topics (rebuilt by replaying them; it never reads another service's schema).

-- Trigram indexes make the forgiving search (a plate's middle, a VIN fragment, part of a name)
-- an index lookup. pg_trgm is a trusted extension: the database owner may create it.
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;

-- -- staff ------------------------------------------------------------------------------------
CREATE TABLE accounts (
    username        text PRIMARY KEY,
    display_name    text        NOT NULL,
    role            text        NOT NULL CHECK (role IN ('agent', 'supervisor', 'quality')),
    password_hash   text        NOT NULL,  -- argon2id, with its parameters and salt
    locale          text        NOT NULL DEFAULT 'zh-CN',
    failed_attempts int         NOT NULL DEFAULT 0,
    locked_until    timestamptz,
    created_at      timestamptz NOT NULL,
    last_sign_in_at timestamptz
);

CREATE TABLE sessions (
    session_hash bytea PRIMARY KEY,  -- sha256 of the cookie's value; the value itself is never stored
    username     text        NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    csrf_token   text        NOT NULL,
    created_at   timestamptz NOT NULL,
    expires_at   timestamptz NOT NULL
);
CREATE INDEX sessions_user ON sessions (username);

-- Every read of a customer's file and every change made through the console: who, when, what.
CREATE TABLE audit_log (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL,
    username    text        NOT NULL,
    role        text        NOT NULL,
    action      text        NOT NULL,
    customer_id text,
    subject     text,  -- what it was about besides the customer: a VIN, a follow-up, a case, a search
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX audit_log_at ON audit_log (at DESC, id DESC);
CREATE INDEX audit_log_customer ON audit_log (customer_id, at DESC);
CREATE INDEX audit_log_user ON audit_log (username, at DESC);

-- Calls a customer made to the service line, as the agent who took them logged them.
CREATE TABLE inbound_calls (
    call_id      uuid PRIMARY KEY,
    customer_id  text        NOT NULL,
    at           timestamptz NOT NULL,
    handled_by   text        NOT NULL,
    kind         text        NOT NULL CHECK (kind IN ('consultation', 'request', 'complaint', 'other')),
    summary      text        NOT NULL,
    complaint_id text
);
CREATE INDEX inbound_calls_customer ON inbound_calls (customer_id, at DESC);

-- -- read model (from aftersales.intake, .followup, .complaints, .notifier) -----------------------
CREATE TABLE customers (
    customer_id      text PRIMARY KEY,
    name             text,
    name_pinyin      text,  -- "zhangwei" for 张伟
    name_initials    text,  -- "zw"
    phone            text,
    email            text,
    address          text,
    region           text,
    person_in_charge text,
    locale           text,
    timezone         text,
    consent          jsonb,
    registered_at    timestamptz,
    updated_at       timestamptz NOT NULL  -- world time of the newest fact applied
);
CREATE INDEX customers_name ON customers (name text_pattern_ops);
CREATE INDEX customers_name_trgm ON customers USING gin (name public.gin_trgm_ops);
CREATE INDEX customers_pinyin ON customers (name_pinyin text_pattern_ops);
CREATE INDEX customers_pinyin_trgm ON customers USING gin (name_pinyin public.gin_trgm_ops);
CREATE INDEX customers_initials ON customers (name_initials text_pattern_ops);

-- Every phone number a customer has had; reversed, so "the last four digits" is a prefix lookup.
CREATE TABLE phones (
    customer_id   text        NOT NULL,
    phone         text        NOT NULL,
    reversed      text        NOT NULL,
    first_seen_at timestamptz NOT NULL,
    PRIMARY KEY (customer_id, phone)
);
CREATE INDEX phones_reversed ON phones (reversed text_pattern_ops);

CREATE TABLE customer_changes (
    event_id    uuid        NOT NULL,
    field       text        NOT NULL,
    customer_id text        NOT NULL,
    at          timestamptz NOT NULL,
    old_value   text,
    new_value   text,
    PRIMARY KEY (event_id, field)
);
CREATE INDEX customer_changes_customer ON customer_changes (customer_id, at);

CREATE TABLE vehicles (
    vin             text PRIMARY KEY,
    customer_id     text,
    plate           text,
    plate_key       text,  -- upper case, no province character, no separators: 粤B·12345 -> B12345
    model           text,
    dealer_id       text,
    region          text,
    sold_at         timestamptz,
    warranty_months int,
    warranty_km     int,
    updated_at      timestamptz NOT NULL
);
CREATE INDEX vehicles_customer ON vehicles (customer_id);
CREATE INDEX vehicles_plate_trgm ON vehicles USING gin (plate_key public.gin_trgm_ops);
CREATE INDEX vehicles_vin_trgm ON vehicles USING gin (vin public.gin_trgm_ops);

CREATE TABLE visits (
    repair_order_id     text PRIMARY KEY,
    vin                 text        NOT NULL,
    customer_id         text,
    dealer_id           text,
    picked_up_at        timestamptz NOT NULL,
    service_type        text,
    items               jsonb       NOT NULL DEFAULT '[]'::jsonb,
    mileage_km          int,
    advisor_id          text,
    next_service_due_at timestamptz,
    next_service_due_km int
);
CREATE INDEX visits_customer ON visits (customer_id, picked_up_at);
CREATE INDEX visits_vin ON visits (vin, picked_up_at);
CREATE INDEX visits_order_trgm ON visits USING gin (upper(repair_order_id) public.gin_trgm_ops);

CREATE TABLE receipts (
    receipt_id      text PRIMARY KEY,
    repair_order_id text        NOT NULL,
    vin             text        NOT NULL,
    customer_id     text,
    returned_at     timestamptz NOT NULL,
    rating          int,
    comments        text
);
CREATE INDEX receipts_customer ON receipts (customer_id, returned_at);
CREATE INDEX receipts_vin ON receipts (vin);

CREATE TABLE followups (
    followup_id   text PRIMARY KEY,
    kind          text        NOT NULL,
    customer_id   text        NOT NULL,
    vin           text,
    dealer_id     text,
    region        text,
    campaign_id   text,
    complaint_id  text,
    due_from      timestamptz,
    due_by        timestamptz,
    status        text        NOT NULL DEFAULT 'scheduled',  -- scheduled, due, overdue, escalated, completed, expired
    outcome       text,
    satisfaction  int,
    satisfied     boolean,
    categories    text[]      NOT NULL DEFAULT '{}',
    agent_id      text,
    attempts      int         NOT NULL DEFAULT 0,
    scheduled_at  timestamptz,
    completed_at  timestamptz,
    updated_at    timestamptz NOT NULL
);
CREATE INDEX followups_customer ON followups (customer_id, due_by);
CREATE INDEX followups_vin ON followups (vin);

-- Every call attempt, as the phone register has it.
CREATE TABLE calls (
    followup_id    text        NOT NULL,
    attempt_no     int         NOT NULL,
    customer_id    text        NOT NULL,
    kind           text        NOT NULL,
    agent_id       text        NOT NULL,
    outcome        text        NOT NULL,
    attempted_at   timestamptz NOT NULL,
    call_back_at   timestamptz,
    satisfaction   int,
    talking_points text,
    requests       text,
    notes          text,
    PRIMARY KEY (followup_id, attempt_no)
);
CREATE INDEX calls_customer ON calls (customer_id, attempted_at);

CREATE TABLE complaints (
    complaint_id   text PRIMARY KEY,
    complaint_ref  text,
    customer_id    text,
    vin            text,
    channel        text,
    category       text,
    severity       text,
    department     text,
    description    text,
    state          text        NOT NULL DEFAULT 'opened',
    level          int         NOT NULL DEFAULT 0,
    assignee       text,
    resolution     text,
    filed_at       timestamptz,
    ack_due_at     timestamptz,
    resolve_due_at timestamptz,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX complaints_customer ON complaints (customer_id, filed_at);
CREATE INDEX complaints_vin ON complaints (vin);

-- A case's timeline: every lifecycle event with who did it.
CREATE TABLE complaint_events (
    event_id     uuid PRIMARY KEY,
    complaint_id text        NOT NULL,
    customer_id  text,
    event_type   text        NOT NULL,
    at           timestamptz NOT NULL,
    actor        text,
    detail       jsonb       NOT NULL DEFAULT '{}'::jsonb
);
CREATE INDEX complaint_events_case ON complaint_events (complaint_id, at);

CREATE TABLE notifications (
    notification_id text PRIMARY KEY,
    customer_id     text        NOT NULL,
    channel         text        NOT NULL,
    template        text        NOT NULL,
    rule            text        NOT NULL,
    status          text        NOT NULL,  -- sent, failed, suppressed
    reason          text,
    attempts        int         NOT NULL DEFAULT 0,
    source_event_type text,
    at              timestamptz NOT NULL
);
CREATE INDEX notifications_customer ON notifications (customer_id, at);
