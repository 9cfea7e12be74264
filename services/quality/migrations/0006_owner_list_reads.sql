-- Every listing of vehicle owners through quality's API (issue 19, "exports audited"; docs/security.md):
-- a batch's affected vehicles and a recall's vehicles name each owner (customer id and name), so each
-- answer is recorded: who (the person from the console token, or the static token's subject), their
-- role, when (the service's clock), which route and alert or recall, the filter it was asked with and
-- how many owners it listed. Append-only: UPDATE, DELETE and TRUNCATE are refused for every role.
CREATE TABLE owner_list_reads (
    id        bigserial   PRIMARY KEY,
    at        timestamptz NOT NULL,
    reader    text        NOT NULL,
    role      text        NOT NULL,
    route     text        NOT NULL,  -- e.g. GET /v1/alerts/{alert_id}/affected-vehicles
    subject   text        NOT NULL,  -- the alert or the recall listed
    filter    jsonb       NOT NULL DEFAULT '{}'::jsonb,
    rows      int         NOT NULL
);
CREATE INDEX owner_list_reads_reader ON owner_list_reads (reader, at DESC);

CREATE FUNCTION owner_list_reads_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'owner_list_reads is append-only: % is refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER owner_list_reads_no_update_or_delete BEFORE UPDATE OR DELETE ON owner_list_reads
    FOR EACH ROW EXECUTE FUNCTION owner_list_reads_append_only();
CREATE TRIGGER owner_list_reads_no_truncate BEFORE TRUNCATE ON owner_list_reads
    FOR EACH STATEMENT EXECUTE FUNCTION owner_list_reads_append_only();
