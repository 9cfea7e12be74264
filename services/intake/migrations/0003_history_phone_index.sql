-- Only phone numbers are looked up by value (a customer called from a number the file held
-- before); the other fields' history is read by customer. One index entry per phone instead of
-- one per value of every field.
DROP INDEX IF EXISTS customer_history_value;
CREATE INDEX customer_history_phone ON customer_history (value) WHERE field = 'phone';
