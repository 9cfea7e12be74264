-- From alert to recall (work plan: "to prevent batch accidents"): a confirmed batch problem,
-- the vehicles carrying the batch with their owners, and the recall campaign's progress.

-- Who owns each vehicle: the customer of its sale, or of a later workshop visit (by world time).
CREATE TABLE vehicle_owners (
    vin          text PRIMARY KEY,
    customer_id  text        NOT NULL,
    name         text,
    region       text,
    occurred_at  timestamptz NOT NULL
);

-- An alert confirmed as a batch problem, and the recall campaign announced from it.
CREATE TABLE recalls (
    campaign_id    text PRIMARY KEY,
    alert_id       text        NOT NULL UNIQUE,
    category       text        NOT NULL,
    batch          text        NOT NULL,
    supplier_id    text,
    containment    text        NOT NULL,
    confirmed_at   timestamptz NOT NULL,
    confirmed_by   text        NOT NULL,
    title          text        NOT NULL,
    address        text        NOT NULL,
    starts_at      timestamptz NOT NULL,
    ends_at        timestamptz NOT NULL,
    event_id       uuid        NOT NULL,   -- the BatchProblemConfirmed
    correlation_id uuid        NOT NULL
);

-- Every vehicle the recall targets (as of the confirmation) and how far it got: the owner
-- reached by the campaign call, a visit booked on it, inspected at a workshop, part replaced.
CREATE TABLE recall_vehicles (
    campaign_id   text        NOT NULL REFERENCES recalls (campaign_id),
    vin           text        NOT NULL,
    customer_id   text,
    owner_name    text,
    region        text,
    dealer_id     text,
    model         text        NOT NULL,
    sold_at       timestamptz NOT NULL,
    reached_at    timestamptz,
    booked_at     timestamptz,
    inspected_at  timestamptz,
    replaced_at   timestamptz,
    repair_order_id text,
    PRIMARY KEY (campaign_id, vin)
);
CREATE INDEX recall_vehicles_vin ON recall_vehicles (vin);
CREATE INDEX recall_vehicles_customer ON recall_vehicles (customer_id);
