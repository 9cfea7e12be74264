-- The kernel tables every service schema holds: inbox, outbox, durable timers.

-- Inbox: the event_ids this service has processed, written in the same transaction as the
-- state change, so a redelivered event is recognised and skipped.
CREATE TABLE inbox (
    event_id     uuid PRIMARY KEY,
    topic        text        NOT NULL,
    "partition"  int         NOT NULL,
    "offset"     bigint      NOT NULL,
    event_type   text,
    processed_at timestamptz NOT NULL DEFAULT now()
);

-- Transactional outbox (Debezium's shape): the events a handler publishes, written with its
-- state; the relay publishes them in id order and marks them.
CREATE TABLE outbox (
    id           bigserial PRIMARY KEY,
    event_id     uuid        NOT NULL UNIQUE,
    topic        text        NOT NULL,
    key          text        NOT NULL,
    event_type   text        NOT NULL,
    payload      bytea       NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz
);
CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Durable timers: due-at rows claimed with FOR UPDATE SKIP LOCKED, so replicas never fire one twice.
CREATE TABLE timers (
    id           bigserial PRIMARY KEY,
    kind         text        NOT NULL,
    ref          text        NOT NULL,
    due_at       timestamptz NOT NULL,
    payload      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    cause_event_id     uuid,
    cause_correlation_id uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    fired_at     timestamptz,
    cancelled_at timestamptz,
    error        text,
    UNIQUE (kind, ref)
);
CREATE INDEX timers_pending ON timers (due_at) WHERE fired_at IS NULL AND cancelled_at IS NULL;
