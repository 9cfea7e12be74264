-- Calls after a sale and after a consultation, the customers' contact flags, and the inbound
-- half of the phone register.

-- What each follow-up follows (VehiclePickedUp, VehicleSold, ConsultationRecorded,
-- InboundCallRecorded, …): the KPI table and the demo count deliveries and consultations by it.
ALTER TABLE followups ADD COLUMN reason_type text;

-- Contact values on the customer's file (intake) that cannot be used, as intake announces them:
-- shown to the agent beside the call so they can ask for the right number.
ALTER TABLE customers ADD COLUMN contact_flags jsonb;

-- The phone register's inbound calls: a consultation, a complaint or a request the customer
-- phoned in, with the person who took it.
CREATE TABLE inbound_calls (
    call_id      text PRIMARY KEY,
    customer_id  text        NOT NULL,
    kind         text        NOT NULL,  -- consultation, complaint, request, other
    summary      text        NOT NULL,
    handled_by   text        NOT NULL,
    received_at  timestamptz NOT NULL,
    vin          text,
    complaint_id text,                  -- the case a complaint call opened (through the complaints API)
    followup_id  text,                  -- the first tracking call a consultation scheduled
    region       text,
    recorded_at  timestamptz NOT NULL
);
CREATE INDEX inbound_calls_customer ON inbound_calls (customer_id, received_at);
CREATE INDEX inbound_calls_agent ON inbound_calls (handled_by, received_at);
CREATE INDEX inbound_calls_time ON inbound_calls (received_at);
