-- Complaint cases (work plan: "recorded in detail", "reported to superior leaders in time",
-- "file all kinds of handling documents", "contact the customer again to confirm").

CREATE TABLE cases (
    complaint_id     text PRIMARY KEY,           -- uuid5 of complaint_ref: the same on every replica and replay
    complaint_ref    text        NOT NULL UNIQUE,
    customer_id      text,
    phone            text,
    vin              text,
    channel          text        NOT NULL,
    category         text        NOT NULL,
    category_source  text        NOT NULL,       -- given, keywords, fallback
    severity         text        NOT NULL,
    severity_source  text        NOT NULL,
    department       text        NOT NULL,
    description      text        NOT NULL,
    part_category    text,
    followup_id      text,
    source           text        NOT NULL,       -- aftersales.intake, aftersales.followup, http
    state            text        NOT NULL,
    round            int         NOT NULL DEFAULT 0,
    assignee         text,
    resolution       text,
    satisfied        boolean,
    confirmation     text,
    filed_at         timestamptz NOT NULL,       -- the earliest filing: the clock's start
    -- The current round's SLA figures, recomputed from the history on every change and at every
    -- deadline (the SLA timer), so lists and KPIs can filter on them.
    level            int         NOT NULL DEFAULT 0,
    ack_due_at       timestamptz,
    resolve_due_at   timestamptz,
    next_due_at      timestamptz,
    breached         boolean     NOT NULL DEFAULT false,  -- any SLA breach in any round
    timer_ref        text,                        -- the SLA timer armed for next_due_at
    correlation_id   uuid        NOT NULL,
    last_event_id    uuid,                        -- the case's latest published event (the causation chain)
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL
);
CREATE INDEX cases_state ON cases (state, level);
CREATE INDEX cases_department ON cases (department, state);
CREATE INDEX cases_filed ON cases (filed_at);

-- The case's history: every step with its world time (`at`) and when it was recorded. The SLA
-- calculator reads the lifecycle kinds; comments, documents, escalations and notes make the timeline.
CREATE TABLE case_history (
    complaint_id text        NOT NULL REFERENCES cases (complaint_id),
    seq          int         NOT NULL,
    kind         text        NOT NULL,
    at           timestamptz NOT NULL,
    recorded_at  timestamptz NOT NULL,
    actor        text,
    detail       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    PRIMARY KEY (complaint_id, seq)
);
CREATE INDEX case_history_kind_at ON case_history (kind, at);

-- Escalations announced (ComplaintEscalated published): once per (case, round, level).
CREATE TABLE escalations (
    complaint_id text        NOT NULL REFERENCES cases (complaint_id),
    round        int         NOT NULL,
    level        int         NOT NULL,
    level_name   text        NOT NULL,
    role         text        NOT NULL,
    person       text,
    breach       text        NOT NULL,
    deadline     timestamptz NOT NULL,
    announced_at timestamptz NOT NULL,
    PRIMARY KEY (complaint_id, round, level)
);

-- Each round's SLA figures (KPIs and the weekly report read these).
CREATE TABLE case_rounds (
    complaint_id     text        NOT NULL REFERENCES cases (complaint_id),
    round            int         NOT NULL,
    started_at       timestamptz NOT NULL,
    ack_due_at       timestamptz,
    resolve_due_at   timestamptz,
    acknowledged_at  timestamptz,
    resolved_at      timestamptz,
    ack_breached     boolean     NOT NULL,
    resolve_breached boolean     NOT NULL,
    ack_seconds      double precision,
    resolve_seconds  double precision,
    level            int         NOT NULL,
    PRIMARY KEY (complaint_id, round)
);

-- Handling documents: metadata here, the text in a file under the configured directory, at a
-- path the service chooses (never one a client sent).
CREATE TABLE documents (
    document_id  text PRIMARY KEY,
    complaint_id text        NOT NULL REFERENCES cases (complaint_id),
    kind         text        NOT NULL,
    title        text        NOT NULL,
    filename     text,
    content_type text        NOT NULL,
    size_bytes   int         NOT NULL,
    sha256       text        NOT NULL,
    path         text        NOT NULL,
    added_by     text,
    added_at     timestamptz NOT NULL,
    filed_at     timestamptz
);
CREATE INDEX documents_case ON documents (complaint_id);
