CREATE TABLE fired (id bigserial PRIMARY KEY, ref text NOT NULL, due_at timestamptz NOT NULL, clock_at timestamptz NOT NULL, replica text NOT NULL);
