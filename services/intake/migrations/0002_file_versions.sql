-- Optimistic concurrency instead of advisory locks: a customer or vehicle file is written back
-- only if nobody wrote it since it was loaded (its version is still the one loaded); otherwise
-- the batch is retried from the start. Two replicas can reach one customer through different
-- partitions (by VIN, by customer id, by phone), so this keeps their writes from crossing;
-- one replica, which owns the partitions, never conflicts with itself.
ALTER TABLE customers ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE vehicles ADD COLUMN version bigint NOT NULL DEFAULT 1;
