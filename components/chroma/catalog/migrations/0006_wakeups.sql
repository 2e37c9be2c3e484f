-- depends: 0005_record_index_without_foreign_keys
-- No lost wake-ups (DESIGN.md section 12), and outages that delay an operation instead of
-- ending it.
--
-- rerun_requested: a change was committed while the operation was running, possibly after
--   it had read the change feed. Set by enqueue instead of coalescing into the running
--   operation; when the run ends (in any way but back to the queue) a new operation of
--   the same kind and set is queued in the same transaction. Cleared by a claim, which
--   always precedes reading the feed.
-- outage_since / outage_retries: the operation's dependency (the query engine) has been
--   unreachable since then, and it was put back this many times without spending an
--   attempt; it gives up after CHROMA_OPERATION_OUTAGE_GIVEUP_S.
ALTER TABLE operations
    ADD COLUMN rerun_requested boolean NOT NULL DEFAULT false,
    ADD COLUMN outage_since timestamptz,
    ADD COLUMN outage_retries integer NOT NULL DEFAULT 0;
