-- exchange-poller schema: what it knows of the catalog (folded from catalog.events), the state of each room's
-- busy picture, and when each Outlook meeting was first seen (organizer names depend on it).
CREATE TABLE locations (
    location_id  text PRIMARY KEY,
    version      bigint NOT NULL,
    state        jsonb  NOT NULL
);

CREATE TABLE spaces (
    space_id     text PRIMARY KEY,
    version      bigint NOT NULL,
    state        jsonb  NOT NULL
);

-- One row per space ever read or published. `mailbox` is the mailbox of the last published picture (NULL once
-- the empty picture of an unpaired space went out); `digest` identifies that picture.
CREATE TABLE rooms (
    space_id      text PRIMARY KEY,
    location_id   text        NOT NULL,
    mailbox       text,
    digest        text,
    items_digest  text,
    sequence      bigint      NOT NULL DEFAULT 0,
    observed_at   timestamptz,
    read_mode     text,
    last_error    text,
    error_at      timestamptz
);

-- Reset when the space is paired again: names then appear for the meetings already there (the seed's advice).
CREATE TABLE first_seen (
    space_id    text        NOT NULL,
    item_id     text        NOT NULL,
    seen_at     timestamptz NOT NULL,
    PRIMARY KEY (space_id, item_id)
);
