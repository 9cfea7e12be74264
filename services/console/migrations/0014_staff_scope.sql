-- An agent's scope (issue 19, docs/security.md "Least privilege"): the regions and dealers whose
-- customers they serve. Both empty: the whole group (the central hotline). The console puts them
-- in the person's token (claims `regions`, `dealers`), every service holds the agent to them, and
-- the console's own search and customer pages apply the same rule.
ALTER TABLE accounts ADD COLUMN regions text[] NOT NULL DEFAULT '{}';
ALTER TABLE accounts ADD COLUMN dealers text[] NOT NULL DEFAULT '{}';
