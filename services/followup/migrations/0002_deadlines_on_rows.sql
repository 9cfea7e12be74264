-- A follow-up's deadlines (due → overdue → escalated → expired), a vehicle's maintenance
-- reminder and a customer's lost-customer check live on their own rows instead of separate
-- timer rows: one row written per pickup instead of seven, and nothing to cancel when a
-- follow-up completes (its next step is cleared in the same UPDATE).

ALTER TABLE followups
    ADD COLUMN next_step    text,         -- due, overdue, escalate, expire; NULL once closed
    ADD COLUMN next_step_at timestamptz;
CREATE INDEX followups_next_step ON followups (next_step_at) WHERE next_step IS NOT NULL;

-- The vehicle's readings the maintenance estimate needs (first and latest), its latest visit's
-- service plan, and the pending reminder with what it will say.
ALTER TABLE vehicles
    ADD COLUMN first_reading_at    timestamptz,
    ADD COLUMN first_reading_km    int,
    ADD COLUMN last_visit_at       timestamptz,
    ADD COLUMN last_mileage_km     int,
    ADD COLUMN next_service_due_at timestamptz,
    ADD COLUMN next_service_due_km int,
    ADD COLUMN remind_at           timestamptz,
    ADD COLUMN reminder            jsonb,
    ADD COLUMN remind_cause        uuid,
    ADD COLUMN remind_correlation  uuid;
CREATE INDEX vehicles_remind_at ON vehicles (remind_at) WHERE remind_at IS NOT NULL;

-- The latest visit or purchase, and when the customer counts as lost if nothing comes after it.
ALTER TABLE customers
    ADD COLUMN last_contact_at  timestamptz,
    ADD COLUMN lost_check_at    timestamptz,
    ADD COLUMN lost_cause       uuid,
    ADD COLUMN lost_correlation uuid;
CREATE INDEX customers_lost_check ON customers (lost_check_at) WHERE lost_check_at IS NOT NULL;

-- Carry what the timer rows held over to the rows, then drop those timers.
UPDATE vehicles v SET first_reading_at = r.first_at, first_reading_km = r.first_km,
                      last_visit_at = r.last_at, last_mileage_km = r.last_km,
                      next_service_due_at = r.due_at, next_service_due_km = r.due_km
  FROM (SELECT DISTINCT ON (vin) vin,
               first_value(picked_up_at) OVER w AS first_at, first_value(mileage_km) OVER w AS first_km,
               last_value(picked_up_at) OVER w AS last_at, last_value(mileage_km) OVER w AS last_km,
               last_value(next_service_due_at) OVER w AS due_at, last_value(next_service_due_km) OVER w AS due_km
          FROM visits
        WINDOW w AS (PARTITION BY vin ORDER BY picked_up_at ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
       ) r
 WHERE v.vin = r.vin;

UPDATE customers c SET last_contact_at = l.at
  FROM (SELECT customer_id, max(at) AS at FROM (
            SELECT customer_id, picked_up_at AS at FROM visits
            UNION ALL SELECT customer_id, sold_at FROM vehicles WHERE sold_at IS NOT NULL) x
         GROUP BY customer_id) l
 WHERE c.customer_id = l.customer_id;

UPDATE followups f SET next_step = 'due', next_step_at = f.due_from
 WHERE f.status = 'scheduled';
UPDATE followups f SET next_step = CASE WHEN f.overdue_at IS NULL THEN 'overdue'
                                        WHEN f.escalated_at IS NULL THEN 'escalate' ELSE 'expire' END,
                       next_step_at = CASE WHEN f.overdue_at IS NULL THEN f.due_by
                                           WHEN f.escalated_at IS NULL THEN f.due_by + interval '2 days'
                                           ELSE f.due_by + interval '14 days' END
 WHERE f.status = 'due';

UPDATE vehicles v SET remind_at = t.due_at, reminder = t.payload, remind_cause = t.cause_event_id,
                      remind_correlation = t.cause_correlation_id
  FROM timers t
 WHERE t.kind = 'maintenance.remind' AND t.ref = v.vin AND t.fired_at IS NULL AND t.cancelled_at IS NULL;

UPDATE customers c SET lost_check_at = t.due_at, lost_cause = t.cause_event_id,
                       lost_correlation = t.cause_correlation_id
  FROM timers t
 WHERE t.kind = 'customer.lost' AND t.ref = c.customer_id AND t.fired_at IS NULL AND t.cancelled_at IS NULL;

DELETE FROM timers WHERE kind IN ('followup.due', 'followup.overdue', 'followup.escalate', 'followup.expire',
                                  'maintenance.remind', 'customer.lost');
