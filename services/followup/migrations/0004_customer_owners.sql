-- Tracking owners (issue 16, services/followup/owners.py): each customer's owner (an agent), set
-- by the owner rules or by a supervisor, the changes as they happened, and the agent a
-- supervisor assigned an open call to. Numbered 0004 (a free number) so that other work on this
-- schema keeps 0008 onwards.

CREATE TABLE customer_owners (
    customer_id text PRIMARY KEY,
    owner       text        NOT NULL,  -- the agent who follows the customer now
    source      text        NOT NULL,  -- rule:dealer, rule:region, rule:default, supervisor
    reason      text        NOT NULL,
    assigned_by text        NOT NULL,  -- system (a rule) or the supervisor
    assigned_at timestamptz NOT NULL,
    region      text,
    dealer_id   text,
    -- what the rules give, kept under a supervisor's choice too: it follows from the log alone
    -- (replay compares it), and a rule only replaces a less specific one (rule_rank)
    rule_owner  text,
    rule_source text,
    rule_rank   int         NOT NULL DEFAULT -1,
    rule_cause  uuid
);
CREATE INDEX customer_owners_owner ON customer_owners (owner, customer_id);

CREATE TABLE customer_owner_changes (
    change_id      bigserial PRIMARY KEY,
    customer_id    text        NOT NULL,
    owner          text        NOT NULL,
    previous_owner text,
    source         text        NOT NULL,
    reason         text        NOT NULL,
    assigned_by    text        NOT NULL,
    assigned_at    timestamptz NOT NULL
);
CREATE INDEX customer_owner_changes_customer ON customer_owner_changes (customer_id, assigned_at);

ALTER TABLE followups
    ADD COLUMN assigned_to   text,
    ADD COLUMN assigned_by   text,
    ADD COLUMN assigned_at   timestamptz,
    ADD COLUMN assign_reason text;
