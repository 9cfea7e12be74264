-- Customer files (work plan: "sort out customer data and establish customer files").

CREATE TABLE customers (
    customer_id      text PRIMARY KEY,
    -- true while the file is known only by a phone number (its id derived from it); the
    -- customer's own id, when it arrives, takes the file over.
    id_derived       boolean     NOT NULL DEFAULT false,
    name             text,
    phone            text,
    email            text,
    address          text,
    region           text,
    person_in_charge text,
    locale           text        NOT NULL DEFAULT 'zh-CN',
    timezone         text        NOT NULL DEFAULT 'Asia/Shanghai',
    consent          jsonb       NOT NULL DEFAULT '{"sms": true, "email": true, "letter": true}'::jsonb,
    -- When each field was last set in the world (occurred_at), so late events never overwrite newer facts.
    field_times      jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at       timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL,
    registered_from  text        NOT NULL
);
CREATE INDEX customers_phone ON customers (phone);
CREATE INDEX customers_region ON customers (region, customer_id);
CREATE INDEX customers_name ON customers (lower(name) text_pattern_ops);

-- Every distinct value a customer field has held, with the earliest time it was seen.
CREATE TABLE customer_history (
    customer_id   text        NOT NULL,
    field         text        NOT NULL,
    value         text        NOT NULL,
    first_seen_at timestamptz NOT NULL,
    event_id      uuid        NOT NULL,
    PRIMARY KEY (customer_id, field, value)
);
CREATE INDEX customer_history_value ON customer_history (field, value);

CREATE TABLE vehicles (
    vin             text PRIMARY KEY,
    customer_id     text,
    plate           text,
    model           text,
    dealer_id       text,
    region          text,
    sale_id         text,
    sold_at         timestamptz,
    warranty_months int,
    warranty_km     int,
    parts           jsonb       NOT NULL DEFAULT '[]'::jsonb,
    field_times     jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at      timestamptz NOT NULL,
    updated_at      timestamptz NOT NULL,
    registered_from text        NOT NULL
);
CREATE INDEX vehicles_customer ON vehicles (customer_id);
CREATE INDEX vehicles_plate ON vehicles (plate);

CREATE TABLE visits (
    repair_order_id     text PRIMARY KEY,
    vin                 text        NOT NULL,
    customer_id         text,
    dealer_id           text        NOT NULL,
    picked_up_at        timestamptz NOT NULL,
    service_type        text        NOT NULL,
    items               jsonb       NOT NULL DEFAULT '[]'::jsonb,
    mileage_km          int,
    advisor_id          text,
    next_service_due_at timestamptz,
    next_service_due_km int,
    event_id            uuid        NOT NULL
);
CREATE INDEX visits_vin ON visits (vin, picked_up_at);
CREATE INDEX visits_customer ON visits (customer_id, picked_up_at);

CREATE TABLE receipts (
    receipt_id      text PRIMARY KEY,
    repair_order_id text        NOT NULL,
    vin             text        NOT NULL,
    returned_at     timestamptz NOT NULL,
    rating          int,
    comments        text,
    event_id        uuid        NOT NULL
);
CREATE INDEX receipts_vin ON receipts (vin);
CREATE INDEX receipts_repair_order ON receipts (repair_order_id);

-- Events intake passes through (shipments, defects, campaigns, complaints): the content last
-- published per business key, so a repeat is not re-published and an amendment is.
CREATE TABLE facts (
    kind         text        NOT NULL,
    ref          text        NOT NULL,
    content_hash text        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, ref)
);

-- Shipments, to check a discrepancy names one of the shipment's lines and follows it.
CREATE TABLE shipments (
    shipment_id text PRIMARY KEY,
    dealer_id   text        NOT NULL,
    shipped_at  timestamptz NOT NULL,
    line_nos    int[]       NOT NULL
);

-- Events accepted through the webhook (an event_id accepted twice is reported as a duplicate).
CREATE TABLE webhook_receipts (
    event_id    uuid PRIMARY KEY,
    producer    text        NOT NULL,
    topic       text        NOT NULL,
    received_at timestamptz NOT NULL
);
