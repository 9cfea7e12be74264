-- Least privilege for people (issue 19, docs/security.md): what the notifier's own API needs to
-- hold a scoped agent (console token with `regions` / `dealers`) to their scope, as intake's
-- events name it: the region on the customer's file (contacts.region, the latest file wins), and
-- each region and dealer of a vehicle sold to or serviced for the customer (customer_scope; '' when
-- the event names none). Rows are only added: a redelivered or replayed event adds nothing.
ALTER TABLE contacts ADD COLUMN region text;

CREATE TABLE customer_scope (
    customer_id text NOT NULL,
    region      text NOT NULL,
    dealer_id   text NOT NULL,
    PRIMARY KEY (customer_id, region, dealer_id)
);
