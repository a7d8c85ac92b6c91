-- Outlook/Exchange: a location's connection settings, a space's pairing with a resource mailbox, and what the
-- exchange-writer last reported per slot beyond the Sync ID.

ALTER TABLE locations
    ADD COLUMN exchange_server                    text,
    -- A Fernet token (spacesync.common.secrets), never the password itself: tokens start with version 0x80.
    ADD COLUMN exchange_password_encrypted        text CHECK (exchange_password_encrypted LIKE 'gAAAAA%'),
    ADD COLUMN exchange_username                  text,
    ADD COLUMN exchange_auth_type                 text CHECK (exchange_auth_type IN ('ntlm', 'basic')),
    ADD COLUMN exchange_access                    text CHECK (exchange_access IN ('delegate', 'impersonation')),
    ADD COLUMN exchange_title_rule                text
        CHECK (exchange_title_rule IN ('patron_name', 'patron_name_and_email', 'public_nickname')),
    ADD COLUMN exchange_populate_organizer        boolean,
    ADD COLUMN exchange_populate_organizer_since  timestamptz,
    ADD COLUMN exchange_verified_at               timestamptz,
    -- Connected (every setting present) or not connected (none): never half a connection.
    ADD CONSTRAINT locations_exchange_whole CHECK (
        num_nulls(exchange_server, exchange_username, exchange_password_encrypted, exchange_auth_type,
                  exchange_access, exchange_title_rule, exchange_populate_organizer) IN (0, 7));

ALTER TABLE spaces
    ADD COLUMN exchange_resource  text,
    ADD COLUMN paired_at          timestamptz,
    ADD CONSTRAINT spaces_pairing_whole CHECK ((exchange_resource IS NULL) = (paired_at IS NULL));
-- One resource calendar belongs to one space: two spaces writing into one room would double-book it.
CREATE UNIQUE INDEX spaces_exchange_resource ON spaces (exchange_resource) WHERE exchange_resource IS NOT NULL;
CREATE INDEX spaces_paired_per_location ON spaces (location_id) WHERE exchange_resource IS NOT NULL;

ALTER TABLE booking_slots
    ADD COLUMN sync_mailbox   text,
    ADD COLUMN sync_attempts  integer;
-- The pairing view's 'last error' of a space: only failing slots are indexed.
CREATE INDEX booking_slots_sync_errors ON booking_slots (space_id, synced_at DESC) WHERE sync_error IS NOT NULL;
