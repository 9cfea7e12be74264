CREATE TABLE seen (event_id uuid PRIMARY KEY, n int NOT NULL, handled_times int NOT NULL DEFAULT 1);
