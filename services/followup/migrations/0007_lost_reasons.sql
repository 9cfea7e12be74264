-- Lost customers (issue 16): the reason a customer with no visit for 12 months gives on the
-- lost-customer call (a fixed list, docs/followup.md), and the note in their words; on the
-- call's register row and on the follow-up it completed, for the reports by reason.
ALTER TABLE call_attempts
    ADD COLUMN lost_reason      text,
    ADD COLUMN lost_reason_note text;
ALTER TABLE followups ADD COLUMN lost_reason text;
CREATE INDEX followups_lost_reason ON followups (completed_at) WHERE lost_reason IS NOT NULL;
