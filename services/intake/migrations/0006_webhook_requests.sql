-- Every signed webhook request taken, by its signature, while a replay of it could still pass the
-- timestamp window: the same request again (a captured one replayed) writes nothing, not even the
-- dead letters of its rejected events. Rows older than the window are pruned on the way.
CREATE TABLE webhook_requests (
    producer    text        NOT NULL,
    signature   text        NOT NULL,
    signed_at   bigint      NOT NULL,  -- the request's X-Aftersales-Timestamp (Unix seconds)
    received_at timestamptz NOT NULL,
    events      integer     NOT NULL,
    PRIMARY KEY (producer, signature)
);
CREATE INDEX webhook_requests_signed_at ON webhook_requests (signed_at);
