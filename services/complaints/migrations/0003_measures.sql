-- Rectification measures (docs/measures.md) and the counts their effect is measured with,
-- all kept from events: the workshop visits (intake's VehiclePickedUp), the defect reports
-- by part category (intake's and our own PartDefectReported) and the quality alerts'
-- part categories (QualityAlertRaised). Complaints by category are the `cases` table.
CREATE TABLE measures (
    measure_id     text PRIMARY KEY,
    target_kind    text NOT NULL CHECK (target_kind IN ('category', 'alert')),
    category       text NOT NULL,          -- the complaint category, or the alert's part category
    alert_id       text,
    title          text NOT NULL,
    action         text NOT NULL,
    owner          text NOT NULL,
    due_at         timestamptz NOT NULL,
    recorded_at    timestamptz NOT NULL,
    recorded_by    text NOT NULL,
    reminded_at    timestamptz,
    verdict        text CHECK (verdict IN ('effective', 'not_effective')),
    verified_by    text,
    verified_at    timestamptz,
    verify_note    text,
    correlation_id uuid NOT NULL,
    CHECK ((verdict IS NULL) = (verified_at IS NULL))
);
CREATE INDEX measures_due ON measures (due_at);

CREATE TABLE measure_visits (
    repair_order_id text PRIMARY KEY,
    picked_up_at    timestamptz NOT NULL,
    dealer_id       text,
    event_id        uuid NOT NULL
);
CREATE INDEX measure_visits_at ON measure_visits (picked_up_at);

CREATE TABLE measure_defects (
    report_id   text PRIMARY KEY,
    category    text NOT NULL,
    reported_at timestamptz NOT NULL,
    event_id    uuid NOT NULL
);
CREATE INDEX measure_defects_at ON measure_defects (category, reported_at);

CREATE TABLE measure_alerts (
    alert_id  text PRIMARY KEY,
    category  text NOT NULL,
    title     text,
    raised_at timestamptz NOT NULL
);
