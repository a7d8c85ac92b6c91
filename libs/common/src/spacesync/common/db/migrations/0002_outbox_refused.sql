-- A row Kafka can never take (larger than the broker or producer allows) is set aside instead of blocking
-- every later row: marked published (so its aggregate's next version goes out) and refused, kept for operators.
ALTER TABLE outbox ADD COLUMN refused_at timestamptz;
