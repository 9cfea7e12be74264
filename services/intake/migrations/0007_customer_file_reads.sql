-- Every read of a customer's file through intake's API (issue 19, docs/security.md "Least
-- privilege"): who (the person's name from the console token, or the static token's subject),
-- their role, when (the service's clock), which file and by which route (the file itself, or a
-- search or worklist that listed it). Append-only: UPDATE, DELETE and TRUNCATE are refused for
-- every role, so a reader cannot wipe their trace.
CREATE TABLE customer_file_reads (
    id          bigserial   PRIMARY KEY,
    at          timestamptz NOT NULL,
    reader      text        NOT NULL,
    role        text        NOT NULL,
    customer_id text        NOT NULL,
    route       text        NOT NULL,  -- e.g. GET /v1/customers/{customer_id}
    detail      jsonb       NOT NULL DEFAULT '{}'::jsonb  -- the search's filters, the page
);
CREATE INDEX customer_file_reads_customer ON customer_file_reads (customer_id, at DESC, id DESC);
CREATE INDEX customer_file_reads_reader ON customer_file_reads (reader, at DESC, id DESC);

CREATE FUNCTION customer_file_reads_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'customer_file_reads is append-only: % is refused', TG_OP USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER customer_file_reads_no_update_or_delete BEFORE UPDATE OR DELETE ON customer_file_reads
    FOR EACH ROW EXECUTE FUNCTION customer_file_reads_append_only();
CREATE TRIGGER customer_file_reads_no_truncate BEFORE TRUNCATE ON customer_file_reads
    FOR EACH STATEMENT EXECUTE FUNCTION customer_file_reads_append_only();
