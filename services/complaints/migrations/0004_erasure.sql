-- Customer erasure (issue 19, docs/complaints.md "Erasure"): the customers whose personal values
-- were scrubbed from every table here, and when; an event about one of them that occurred at or
-- before erased_at files no personal value again (the replay guard in handlers.py).
CREATE TABLE erased_customers (
    customer_id text PRIMARY KEY,
    erasure_id  text        NOT NULL,
    erased_at   timestamptz NOT NULL
);
-- A handling document erased with its customer: its file is deleted (after the erasure's
-- transaction commits, by the complaint.erase_files timer), its file name and checksum cleared;
-- the row stays, so the case still counts it.
ALTER TABLE documents ADD COLUMN erased_at timestamptz;
