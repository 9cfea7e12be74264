-- Customer erasure (issue 19, docs: erasure contract): the customers erased and when. Quality holds
-- of a customer only the owner's name (vehicle_owners.name, recall_vehicles.owner_name) and what
-- defect reports on their vehicles or complaints say (reports.description); CustomerErased sets
-- those to NULL and keeps VINs, ids, batches, dates and counts (the early warning, the recall's
-- progress and the shipment figures do not change). An event about the customer that occurred at
-- or before erased_at (a replay, a late delivery) is filed without them.
CREATE TABLE erased_customers (
    customer_id  text PRIMARY KEY,
    erasure_id   text        NOT NULL,
    erased_at    timestamptz NOT NULL
);

-- Whose complaint a complaint's defect report came from (ComplaintOpened names the customer):
-- what links a report without a VIN to the customer it may quote.
ALTER TABLE complaints ADD COLUMN customer_id text;
CREATE INDEX complaints_customer ON complaints (customer_id);
CREATE INDEX vehicle_owners_customer ON vehicle_owners (customer_id);
