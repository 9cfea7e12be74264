-- Console II: people of a department a complaint is routed to (role 'department', with the
-- department's name from the complaints service's routing), and the worklist views a handler saves.
ALTER TABLE accounts DROP CONSTRAINT accounts_role_check;
ALTER TABLE accounts ADD CONSTRAINT accounts_role_check
    CHECK (role IN ('agent', 'supervisor', 'quality', 'department'));
ALTER TABLE accounts ADD COLUMN department text;
ALTER TABLE accounts ADD CONSTRAINT accounts_department_check
    CHECK ((role = 'department') = (department IS NOT NULL));

-- A saved worklist view: its name and the filters' query string, per person.
CREATE TABLE saved_views (
    username   text        NOT NULL REFERENCES accounts (username) ON DELETE CASCADE,
    name       text        NOT NULL CHECK (length(name) BETWEEN 1 AND 60),
    page       text        NOT NULL,  -- the page the view belongs to, e.g. /cases
    query      text        NOT NULL,  -- the filters, as the page's query string
    created_at timestamptz NOT NULL,
    PRIMARY KEY (username, page, name)
);
