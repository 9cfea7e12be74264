-- Quality: units in service, defect reports, early-warning cells and alerts, parts shipments,
-- complaint categories (work plan: "data monitoring of important parts ... report it to the
-- quality inspection department"; "the accuracy rate of parts shipment is over 98%").

-- Vehicles sold, from VehicleSold; the latest sale event of a VIN (by occurred_at) wins.
CREATE TABLE vehicles (
    vin          text PRIMARY KEY,
    model        text        NOT NULL,
    sold_at      timestamptz NOT NULL,
    dealer_id    text,
    region       text,
    event_id     uuid        NOT NULL,
    occurred_at  timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- Units in service: one row per part unit of a sale's parts list (denormalised: model and
-- sold_at), so a cell's units and unit-months are one indexed aggregate.
CREATE TABLE vehicle_parts (
    vin          text        NOT NULL REFERENCES vehicles (vin) ON DELETE CASCADE,
    line         int         NOT NULL,
    category     text        NOT NULL,
    part_no      text        NOT NULL,
    batch        text        NOT NULL,
    supplier_id  text        NOT NULL,
    model        text        NOT NULL,
    sold_at      timestamptz NOT NULL,
    PRIMARY KEY (vin, line)
);
CREATE INDEX vehicle_parts_batch ON vehicle_parts (category, batch, sold_at);
CREATE INDEX vehicle_parts_supplier_model ON vehicle_parts (category, supplier_id, model, sold_at);

-- Defect reports from intake (dealers, warehouse, field service) and complaints. The
-- reported_* columns keep what the report said; part_no/batch/supplier_id/model are filled
-- from the vehicle's parts list when missing (resolution says how far that got). A report
-- is counted once per defect (duplicate_of points at the counted one) under the cell_*
-- attributes of its episode.
CREATE TABLE reports (
    report_id            text PRIMARY KEY,
    source               text        NOT NULL,  -- intake | complaints
    event_id             uuid        NOT NULL,
    correlation_id       uuid        NOT NULL,
    vin                  text,
    category             text        NOT NULL,
    failure_mode         text        NOT NULL,
    reported_part_no     text,
    reported_batch       text,
    reported_supplier_id text,
    reported_model       text,
    part_no              text,
    batch                text,
    supplier_id          text,
    model                text,
    mileage_km           int,
    reported_by          text        NOT NULL,
    reported_at          timestamptz NOT NULL,
    complaint_id         text,
    description          text,
    resolution           text        NOT NULL,  -- as_reported, from_vehicle, partial, awaiting_sale, unresolved
    resolution_note      text,
    counted              boolean     NOT NULL DEFAULT true,
    duplicate_of         text,
    cell_batch           text,
    cell_supplier_id     text,
    cell_model           text,
    received_at          timestamptz NOT NULL
);
CREATE INDEX reports_batch_cell ON reports (category, cell_batch, reported_at) WHERE counted;
CREATE INDEX reports_supplier_model_cell ON reports (category, cell_supplier_id, cell_model, reported_at) WHERE counted;
CREATE INDEX reports_vin ON reports (vin, category);
CREATE INDEX reports_reported_at ON reports (reported_at);

-- Early-warning cells that have reports: where monitoring (re)starts and whether new reports
-- await the next scheduled look.
CREATE TABLE cells (
    cell_key             text PRIMARY KEY,
    kind                 text        NOT NULL,  -- batch | supplier_model
    category             text        NOT NULL,
    batch                text,
    supplier_id          text,
    model                text,
    since                timestamptz,           -- the close of the cell's last alert
    dirty                boolean     NOT NULL DEFAULT false,
    last_look_at         timestamptz,
    last_event_id        uuid,                  -- the latest report behind the cell's evidence
    last_correlation_id  uuid,
    created_at           timestamptz NOT NULL
);
CREATE INDEX cells_dirty ON cells (cell_key) WHERE dirty;

CREATE TABLE alerts (
    alert_id          text PRIMARY KEY,
    cell_key          text        NOT NULL REFERENCES cells (cell_key),
    cell              jsonb       NOT NULL,
    category          text        NOT NULL,
    rule              text        NOT NULL,  -- poisson | failure_mode_burst
    state             text        NOT NULL,  -- raised | acknowledged | closed
    observed          int         NOT NULL,
    expected          double precision NOT NULL,
    statistic         double precision,
    p_value           double precision,
    threshold         double precision,
    as_of             timestamptz NOT NULL,
    since             timestamptz,
    details           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    report_ids        text[]      NOT NULL,
    vins              text[]      NOT NULL,
    revision          int         NOT NULL DEFAULT 0,
    raised_at         timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL,
    acknowledged_at   timestamptz,
    acknowledged_by   text,
    acknowledge_note  text,
    closed_at         timestamptz,
    closed_by         text,
    close_note        text,
    last_event_id     uuid        NOT NULL,
    correlation_id    uuid        NOT NULL
);
-- One open alert per cell, whichever replica raises it.
CREATE UNIQUE INDEX alerts_one_open_per_cell ON alerts (cell_key) WHERE state <> 'closed';
CREATE INDEX alerts_state ON alerts (state, category);

-- Parts shipments (PartShipped) and their discrepancies, which may arrive first.
CREATE TABLE shipments (
    shipment_id  text PRIMARY KEY,
    order_id     text        NOT NULL,
    dealer_id    text        NOT NULL,
    shipped_at   timestamptz NOT NULL,
    event_id     uuid        NOT NULL,
    updated_at   timestamptz NOT NULL
);
CREATE INDEX shipments_shipped_at ON shipments (shipped_at);

CREATE TABLE shipment_lines (
    shipment_id  text NOT NULL REFERENCES shipments (shipment_id) ON DELETE CASCADE,
    line_no      int  NOT NULL,
    part_no      text NOT NULL,
    category     text NOT NULL,
    qty          int  NOT NULL,
    batch        text NOT NULL,
    supplier_id  text NOT NULL,
    PRIMARY KEY (shipment_id, line_no)
);

CREATE TABLE discrepancies (
    shipment_id  text        NOT NULL,
    line_no      int         NOT NULL,
    kind         text        NOT NULL,
    reported_at  timestamptz NOT NULL,
    notes        text,
    event_id     uuid        NOT NULL,
    PRIMARY KEY (shipment_id, line_no, kind)
);

-- Complaint categories for the weekly quality meeting (ComplaintOpened).
CREATE TABLE complaints (
    complaint_id   text PRIMARY KEY,
    category       text        NOT NULL,
    part_category  text,
    vin            text,
    severity       text,
    filed_at       timestamptz NOT NULL,
    event_id       uuid        NOT NULL
);
CREATE INDEX complaints_filed_at ON complaints (filed_at);
