-- exchange-writer schema: what it knows of the catalog and of bookings (folded from Kafka), and its own record
-- of every slot it wrote to Exchange (the Sync ID).
CREATE TABLE locations (
    location_id  text PRIMARY KEY,
    version      integer NOT NULL,
    state        jsonb   NOT NULL
);

CREATE TABLE categories (
    category_id  text PRIMARY KEY,
    version      integer NOT NULL,
    state        jsonb   NOT NULL
);

CREATE TABLE spaces (
    space_id             text PRIMARY KEY,
    version              integer NOT NULL,
    state                jsonb   NOT NULL,
    import_requested_at  timestamptz
);

-- One row per booking (ids are unique per ce_source). `generation` counts changes that need a pass over the
-- booking; the writer is done with it when processed_generation catches up.
CREATE TABLE bookings (
    source                 text        NOT NULL,
    booking_id             text        NOT NULL,
    version                integer     NOT NULL,
    state                  jsonb       NOT NULL,
    event_time             timestamptz NOT NULL,
    generation             bigint      NOT NULL DEFAULT 1,
    processed_generation   bigint      NOT NULL DEFAULT 0,
    next_attempt_at        timestamptz NOT NULL DEFAULT now(),
    lease_owner            text,
    lease_until            timestamptz,
    sync_sequence          integer     NOT NULL DEFAULT 0,
    published_fingerprint  text,
    PRIMARY KEY (source, booking_id)
);
CREATE INDEX bookings_due ON bookings (next_attempt_at) WHERE generation <> processed_generation;
CREATE INDEX bookings_slots ON bookings USING gin ((state -> 'slots') jsonb_path_ops);

CREATE TABLE slots (
    source         text        NOT NULL,
    booking_id     text        NOT NULL,
    slot_id        text        NOT NULL,
    space_id       text        NOT NULL,
    state          text        NOT NULL CHECK (state IN ('pending', 'synced', 'failed', 'removed')),
    mailbox        text,
    location_id    text,
    item_id        text,
    change_key     text,
    fingerprint    text,
    create_intent  text,
    attempts       integer     NOT NULL DEFAULT 0,
    last_error     text,
    updated_at     timestamptz NOT NULL DEFAULT now(),
    synced_at      timestamptz,
    PRIMARY KEY (source, booking_id, slot_id),
    FOREIGN KEY (source, booking_id) REFERENCES bookings (source, booking_id)
);
CREATE INDEX slots_space ON slots (space_id);
CREATE INDEX slots_location_unsettled ON slots (location_id) WHERE state IN ('pending', 'failed');
