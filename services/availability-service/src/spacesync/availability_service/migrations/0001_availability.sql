-- availability-service schema: what it folded of the catalog, bookings (of every ce_source) and Exchange busy
-- pictures, normalised. Rows are a function of the newest version/sequence of each aggregate only (no fold
-- times), so a rebuild from the topics yields the same rows.
CREATE TABLE locations (
    location_id  text    PRIMARY KEY,
    version      bigint  NOT NULL,
    timezone     text    NOT NULL,
    active       boolean NOT NULL
);

CREATE TABLE categories (
    category_id       text    PRIMARY KEY,
    version           bigint  NOT NULL,
    location_id       text    NOT NULL,
    public_nicknames  boolean NOT NULL,
    active            boolean NOT NULL
);

CREATE TABLE spaces (
    space_id       text    PRIMARY KEY,
    version        bigint  NOT NULL,
    location_id    text    NOT NULL,
    category_id    text    NOT NULL,
    name           text    NOT NULL,
    slot_minutes   integer NOT NULL,
    opening_hours  jsonb   NOT NULL,
    active         boolean NOT NULL
);
CREATE INDEX spaces_location ON spaces (location_id);

-- The newest version of each booking (ids are unique per ce_source); a cancelled one keeps its row, no slots.
CREATE TABLE bookings (
    source      text   NOT NULL,
    booking_id  text   NOT NULL,
    version     bigint NOT NULL,
    PRIMARY KEY (source, booking_id)
);

-- Intervals of a space are found by btree on (space_id, start_at): a range read starts at most a day before the
-- range (LONG), and the few longer intervals have a partial index of their own. A GiST over (space_id, tstzrange)
-- costs ~5x a btree per insert, and the fold inserts tens of thousands of rows a second.
-- Confirmed slots of the newest version of confirmed bookings.
CREATE TABLE booked_slots (
    source      text        NOT NULL,
    booking_id  text        NOT NULL,
    slot_id     text        NOT NULL,
    space_id    text        NOT NULL,
    start_at    timestamptz NOT NULL,
    end_at      timestamptz NOT NULL,
    patron      text        NOT NULL,
    nickname    text,
    PRIMARY KEY (source, booking_id, slot_id)
);
CREATE INDEX booked_slots_space ON booked_slots (space_id, start_at);
CREATE INDEX booked_slots_space_long ON booked_slots (space_id, start_at) WHERE end_at - start_at > interval '1 day';

-- The newest busy picture of each space (freebusy.changed) and its periods.
CREATE TABLE busy_pictures (
    space_id      text        PRIMARY KEY,
    sequence      bigint      NOT NULL,
    location_id   text        NOT NULL,
    mailbox       text,
    window_start  timestamptz NOT NULL,
    window_end    timestamptz NOT NULL,
    observed_at   timestamptz NOT NULL
);

CREATE TABLE busy_periods (
    space_id   text        NOT NULL REFERENCES busy_pictures ON DELETE CASCADE,
    start_at   timestamptz NOT NULL,
    end_at     timestamptz NOT NULL,
    status     text        NOT NULL,
    organizer  text
);
CREATE INDEX busy_periods_space ON busy_periods (space_id, start_at);
CREATE INDEX busy_periods_space_long ON busy_periods (space_id, start_at) WHERE end_at - start_at > interval '1 day';
