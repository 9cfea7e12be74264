-- The vehicle's dealer and region, when the filing named them (the figures by region and dealer),
-- and each round's mean-time figures in working time on the case's calendar beside the elapsed
-- active time (ack_seconds, resolve_seconds).
ALTER TABLE cases ADD COLUMN dealer_id text, ADD COLUMN region text;
ALTER TABLE case_rounds ADD COLUMN ack_working_seconds double precision,
                        ADD COLUMN resolve_working_seconds double precision;
-- The weekly SLA compliance reads the steps that fell due in a week.
CREATE INDEX case_rounds_ack_due ON case_rounds (ack_due_at);
CREATE INDEX case_rounds_resolve_due ON case_rounds (resolve_due_at);
