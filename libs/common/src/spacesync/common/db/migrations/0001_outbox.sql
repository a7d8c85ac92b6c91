-- Transactional outbox (Debezium-style columns). A service inserts rows in the same transaction as
-- its state change; the relay publishes them to Kafka in seq order and marks them published.
CREATE TABLE outbox (
    seq            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id             uuid        NOT NULL UNIQUE,          -- ce_id: stays the same if the row is re-sent
    aggregatetype  text        NOT NULL,                 -- e.g. booking, space
    aggregateid    text        NOT NULL,                 -- Kafka key and ce_subject
    type           text        NOT NULL,                 -- ce_type
    topic          text        NOT NULL,                 -- logical topic name (without prefix)
    payload        json        NOT NULL,                 -- json, not jsonb: the exact bytes we publish
    created_at     timestamptz NOT NULL DEFAULT now(),   -- ce_time
    published_at   timestamptz,
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text
);

CREATE INDEX outbox_unpublished ON outbox (seq) WHERE published_at IS NULL;
CREATE INDEX outbox_published_at ON outbox (published_at) WHERE published_at IS NOT NULL;

-- Wake the relay when rows are committed (NOTIFY is delivered at commit, once per transaction).
CREATE FUNCTION outbox_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify(TG_TABLE_SCHEMA || '_outbox', '');
    RETURN NULL;
END $$;

CREATE TRIGGER outbox_notify AFTER INSERT ON outbox
    FOR EACH STATEMENT EXECUTE FUNCTION outbox_notify();
