-- Erasure (issue 19, the erasure contract): the customers whose personal data intake erased
-- (CustomerErased: the file and the phone-only files it took over). services/followup/erasure.py
-- scrubs what follow-up holds of them; the handlers write no personal value of such a customer
-- from an event that occurred at or before erased_at (a replay, a late delivery).
-- Numbered 0012 (after 0011; 0003 and 0008-0010 stay free for the work that reserved them).
CREATE TABLE erased_customers (
    customer_id text PRIMARY KEY,
    erasure_id  text        NOT NULL,
    erased_at   timestamptz NOT NULL
);

-- An inbound call's summary is the customer's words: erased with them, the call itself (kind,
-- agent, time, region: the register's counts) stays.
ALTER TABLE inbound_calls ALTER COLUMN summary DROP NOT NULL;
