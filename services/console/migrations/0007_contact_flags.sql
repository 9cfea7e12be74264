-- Contact values on the customer's file that cannot be used (a phone libphonenumber rejects, an
-- e-mail that is not an address), as intake announces them: the customer page shows the value
-- and why, so the agent asks the customer for the right one and corrects it.
ALTER TABLE customers ADD COLUMN contact_flags jsonb;
