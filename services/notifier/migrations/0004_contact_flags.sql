-- Contact values on the customer's file that failed their checks, as intake announces them
-- ({field: {value, reason, …}}): a customer whose phone is flagged is written to (the rule's
-- fallback channel) at once, instead of waiting for a phone that is not on its way.
ALTER TABLE contacts ADD COLUMN contact_flags jsonb;
