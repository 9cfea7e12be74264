-- The W3C trace context (https://www.w3.org/TR/trace-context/) of the request or record during
-- which an outbox row was written: the relay sends it as the Kafka headers `traceparent` and
-- `tracestate`, so the consumer continues that trace (shared/tracing.py). NULL: written outside
-- any trace (rows from before this migration, a timer), sent without the headers.
ALTER TABLE outbox ADD COLUMN traceparent text, ADD COLUMN tracestate text;
