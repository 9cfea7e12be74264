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

-- The letter register: every letter rendered for printing and posting.
CREATE TABLE letters (
    letter_id      uuid PRIMARY KEY,  -- the notification id
    addressee      text,
    postal_address text        NOT NULL,
    subject        text        NOT NULL,
    body           text        NOT NULL,
    registered_at  timestamptz NOT NULL,
    printed_at     timestamptz,
    printed_by     text
);
CREATE INDEX letters_unprinted ON letters (registered_at) WHERE printed_at IS NULL;

-- A customer's "no" to a channel (or to all), with who recorded it and why.
CREATE TABLE opt_outs (
    customer_id text        NOT NULL,
    channel     text        NOT NULL,  -- sms, email, letter, all
    reason      text,
    recorded_by text        NOT NULL,
    recorded_at timestamptz NOT NULL,
    PRIMARY KEY (customer_id, channel)
);

-- Campaigns (from intake), so an invitation can name its title, dates and address.
CREATE TABLE campaigns (
    campaign_id text PRIMARY KEY,
    title       text        NOT NULL,
    kind        text        NOT NULL,
    starts_at   timestamptz NOT NULL,
    ends_at     timestamptz NOT NULL,
    address     text        NOT NULL,
    updated_at  timestamptz NOT NULL
);
