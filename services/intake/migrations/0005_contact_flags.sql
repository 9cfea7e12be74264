-- Contact values a sale, pickup or CRM record sent that failed their checks (a phone
-- libphonenumber rejects, an e-mail that is not an address): the record is filed without them
-- and the bad value is kept here with the reason, {field: {value, reason, flagged_at, source}},
-- until a usable value (an agent's correction) clears it. NULL: never flagged.
ALTER TABLE customers ADD COLUMN contact_flags jsonb;
CREATE INDEX customers_flagged ON customers (customer_id) WHERE contact_flags IS NOT NULL AND contact_flags <> '{}'::jsonb;
