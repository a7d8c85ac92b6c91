-- Versions and sequences of other producers may exceed int4 (e.g. epoch milliseconds): bigint, like the contract.
ALTER TABLE locations ALTER COLUMN version TYPE bigint;
ALTER TABLE categories ALTER COLUMN version TYPE bigint;
ALTER TABLE spaces ALTER COLUMN version TYPE bigint;
ALTER TABLE bookings ALTER COLUMN version TYPE bigint;
-- The connection a location had before it was disconnected: appointments of its spaces can still be removed.
ALTER TABLE locations ADD COLUMN retired_exchange jsonb;
