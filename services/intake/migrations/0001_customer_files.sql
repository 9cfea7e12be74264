-- Customer files (work plan: "sort out customer data and establish customer files").

CREATE TABLE customers (
    customer_id      text PRIMARY KEY,
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
CREATE INDEX customers_region ON customers (region);
CREATE INDEX customers_name ON customers (lower(name) text_pattern_ops);

-- Every value a customer field has had, with when it took effect: the change history.
CREATE TABLE customer_history (
    customer_id  text        NOT NULL,
    field        text        NOT NULL,
    value        text,
    effective_at timestamptz NOT NULL,
    event_id     uuid        NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (customer_id, field, effective_at, event_id)
);

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
    updated_at      timestamptz NOT NULL
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
    customer_id     text,
    returned_at     timestamptz NOT NULL,
    rating          int,
    comments        text,
    event_id        uuid        NOT NULL
);
CREATE INDEX receipts_vin ON receipts (vin);
