-- Idempotency-Key on every POST (shared/api.py): the first response per key and credential
-- (a hash of the Authorization header), replayed to a retry for 24 hours. `status` is NULL
-- while the first request is still running; only successful answers are kept.
CREATE TABLE IF NOT EXISTS http_idempotency (
    key         text        NOT NULL,
    credential  text        NOT NULL,
    route       text        NOT NULL,
    fingerprint text        NOT NULL,
    created_at  timestamptz NOT NULL,
    status      integer,
    headers     jsonb,
    body        bytea,
    PRIMARY KEY (key, credential)
);
CREATE INDEX IF NOT EXISTS http_idempotency_created_at ON http_idempotency (created_at);
