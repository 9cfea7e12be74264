-- Erasure (issue 19, docs: the erasure contract): the customers whose personal data intake
-- erased (CustomerErased, for the file and the phone-only files it took over). The handlers
-- write no personal value of such a customer from an event that occurred before erased_at (a
-- replay, a late delivery), and a rebuild of the read model keeps this table, so replaying the
-- topics restores nothing of them.
CREATE TABLE erased_customers (
    customer_id text PRIMARY KEY,
    erasure_id  text        NOT NULL,
    erased_at   timestamptz NOT NULL
);

-- An inbound call's summary is the customer's words: erased with them, the call itself stays.
ALTER TABLE inbound_calls ALTER COLUMN summary DROP NOT NULL;

-- A receipt's comments erased: the words go, the fact that there were some stays (the receipts'
-- weekly figures count the receipts with a comment).
ALTER TABLE receipts ADD COLUMN comments_erased boolean NOT NULL DEFAULT false;
