-- booking-service schema: the catalog (locations, categories, spaces) and bookings with their slots.
CREATE EXTENSION IF NOT EXISTS btree_gist WITH SCHEMA public;

CREATE TABLE locations (
    id          uuid PRIMARY KEY,
    name        text        NOT NULL,
    timezone    text        NOT NULL,
    active      boolean     NOT NULL DEFAULT true,
    version     integer     NOT NULL DEFAULT 1,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE categories (
    id                uuid PRIMARY KEY,
    location_id       uuid        NOT NULL REFERENCES locations (id),
    name              text        NOT NULL,
    public_nicknames  boolean     NOT NULL DEFAULT false,
    active            boolean     NOT NULL DEFAULT true,
    version           integer     NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX categories_location ON categories (location_id);

CREATE TABLE spaces (
    id                   uuid PRIMARY KEY,
    location_id          uuid        NOT NULL REFERENCES locations (id),
    category_id          uuid        NOT NULL REFERENCES categories (id),
    name                 text        NOT NULL,
    slot_minutes         integer     NOT NULL CHECK (slot_minutes > 0),
    max_booking_minutes  integer     NOT NULL CHECK (max_booking_minutes >= slot_minutes),
    opening_hours        jsonb       NOT NULL,
    active               boolean     NOT NULL DEFAULT true,
    version              integer     NOT NULL DEFAULT 1,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX spaces_location ON spaces (location_id);

CREATE TABLE bookings (
    id               uuid PRIMARY KEY,
    status           text        NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
    first_name       text        NOT NULL,
    last_name        text        NOT NULL,
    email            text        NOT NULL,
    public_nickname  text,
    version          integer     NOT NULL DEFAULT 1,
    sync_sequence    integer     NOT NULL DEFAULT 0,   -- last exchange.sync sequence folded
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE booking_slots (
    id               uuid PRIMARY KEY,
    booking_id       uuid        NOT NULL REFERENCES bookings (id),
    position         integer     NOT NULL,
    space_id         uuid        NOT NULL REFERENCES spaces (id),
    during           tstzrange   NOT NULL CHECK (NOT isempty(during) AND lower_inc(during) AND NOT upper_inc(during)),
    status           text        NOT NULL CHECK (status IN ('confirmed', 'cancelled')),
    -- Outlook/Exchange sync, folded from exchange.sync
    sync_state       text,
    sync_item_id     text,
    sync_change_key  text,
    sync_error       text,
    synced_at        timestamptz,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    -- No double booking: two confirmed slots of one space never overlap. Postgres decides, not Python.
    -- Checked at commit, so one change may move a booking's slots past each other (a swap, a reshuffle).
    CONSTRAINT booking_slots_no_overlap
        EXCLUDE USING gist (space_id WITH =, during WITH &&) WHERE (status = 'confirmed')
        DEFERRABLE INITIALLY DEFERRED
);
CREATE INDEX booking_slots_booking ON booking_slots (booking_id, position);
