-- Contacts projected from intake's customer events, and every notification with its attempts.

CREATE TABLE contacts (
    customer_id text PRIMARY KEY,
    name        text,
    phone       text,
    email       text,
    address     text,
    locale      text        NOT NULL DEFAULT 'zh-CN',
    timezone    text        NOT NULL DEFAULT 'Asia/Shanghai',
    consent     jsonb       NOT NULL DEFAULT '{"sms": true, "email": true, "letter": true}'::jsonb,
    updated_at  timestamptz NOT NULL
);

-- One notification per (rule, source event, recipient): the primary key is derived from them,
-- so a replayed or redelivered event never creates a second one.
CREATE TABLE notifications (
    notification_id   uuid PRIMARY KEY,
    rule              text        NOT NULL,
    source_event_id   uuid        NOT NULL,
    source_event_type text        NOT NULL,
    correlation_id    uuid        NOT NULL,
    recipient         text        NOT NULL,
    recipient_kind    text        NOT NULL,
    channel           text        NOT NULL,
    template          text        NOT NULL,
    locale            text,
    context           jsonb       NOT NULL,
    status            text        NOT NULL,  -- awaiting_contact, pending, sending, sent, failed, suppressed
    due_at            timestamptz NOT NULL,
    attempts          int         NOT NULL DEFAULT 0,
    sending_since     timestamptz,
    last_error        text,
    provider_ref      text,
    address           text,
    created_at        timestamptz NOT NULL,
    finished_at       timestamptz,
    UNIQUE (rule, source_event_id, recipient)
);
CREATE INDEX notifications_due ON notifications (due_at) WHERE status = 'pending';
CREATE INDEX notifications_sending ON notifications (sending_since) WHERE status = 'sending';
CREATE INDEX notifications_awaiting ON notifications (recipient) WHERE status = 'awaiting_contact';
CREATE INDEX notifications_recipient ON notifications (recipient, created_at);
