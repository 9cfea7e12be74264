-- Customer erasure (issue 19, docs: the erasure contract): the register of every erasure, who
-- asked, why and when; the reason stays here (it is not on the bus). One per customer: erasing
-- an erased customer answers the record on file. `merged_customer_ids`: the phone-only files
-- this file took over (their ids went to other services before the merge), erased with it.
CREATE TABLE erasures (
    erasure_id          text        PRIMARY KEY,
    customer_id         text        NOT NULL UNIQUE,
    requested_by        text        NOT NULL,
    reason              text        NOT NULL,
    requested_at        timestamptz NOT NULL,
    erased_at           timestamptz NOT NULL,
    merged_customer_ids text[]      NOT NULL DEFAULT '{}'
);
CREATE INDEX erasures_requested_at ON erasures (requested_at, erasure_id);
CREATE INDEX erasures_merged ON erasures USING gin (merged_customer_ids);

-- The file keeps its id, vehicles, visits and dates; `erased_at` says its personal values were
-- removed then (facts that occurred later may have filed new ones).
ALTER TABLE customers ADD COLUMN erased_at timestamptz;

-- Which file took over which phone-only file (a rename or an absorption), so an erasure names
-- the ids the customer was known by elsewhere. Merges before this migration left no trace.
CREATE TABLE customer_merges (
    merged_id   text        PRIMARY KEY,
    customer_id text        NOT NULL,
    merged_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX customer_merges_customer ON customer_merges (customer_id);
