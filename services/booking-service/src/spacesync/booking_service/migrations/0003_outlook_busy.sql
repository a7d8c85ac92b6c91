-- Outlook/Exchange busy time per space, folded from exchange.freebusy (the exchange-poller's pictures of each
-- paired room): bookings over it are refused. Each picture replaces the space's whole busy set.

-- One row per space from the moment the space exists (sequence 0: no picture yet), so a booking always has a
-- row to lock (FOR SHARE) while it checks the busy set, and a newer picture waits for that booking to commit.
CREATE TABLE outlook_pictures (
    space_id      uuid PRIMARY KEY REFERENCES spaces (id) ON DELETE CASCADE,
    sequence      bigint      NOT NULL DEFAULT 0 CHECK (sequence >= 0),  -- last freebusy.changed sequence folded
    mailbox       text,                                                   -- NULL: not paired (or no picture yet)
    window_start  timestamptz,
    window_end    timestamptz,
    observed_at   timestamptz,
    folded_at     timestamptz
);
INSERT INTO outlook_pictures (space_id) SELECT id FROM spaces;

CREATE FUNCTION outlook_picture_of_new_space() RETURNS trigger LANGUAGE plpgsql
    SET search_path FROM CURRENT AS $$
BEGIN
    INSERT INTO outlook_pictures (space_id) VALUES (NEW.id);
    RETURN NULL;
END $$;
CREATE TRIGGER spaces_outlook_picture AFTER INSERT ON spaces
    FOR EACH ROW EXECUTE FUNCTION outlook_picture_of_new_space();

-- The meetings of the current picture (Busy, OOF, WorkingElsewhere; never the writer's own appointments).
CREATE TABLE outlook_busy (
    space_id   uuid      NOT NULL REFERENCES outlook_pictures (space_id) ON DELETE CASCADE,
    during     tstzrange NOT NULL CHECK (NOT isempty(during)),
    status     text      NOT NULL,
    organizer  text      -- admin views only, never in a public answer
);
CREATE INDEX outlook_busy_space_during ON outlook_busy USING gist (space_id, during);
