-- depends: 0004_recommendations
-- The record index loses its two foreign keys (to datasets and files).
--
-- Each is a per-row trigger: on a bulk COPY of 50k rows they halved the rate (70k vs
-- 150k rows/s on a 2-core VM, bench in the session-2 note). Only the catalog writes
-- `records`, always after inserting the file row in the same transaction; files are
-- forgotten only when no record points at them (`Catalog.forget_files` checks that in
-- its DELETE), and datasets are never deleted.
ALTER TABLE records DROP CONSTRAINT IF EXISTS records_dataset_id_fkey;
ALTER TABLE records DROP CONSTRAINT IF EXISTS records_file_id_fkey;
