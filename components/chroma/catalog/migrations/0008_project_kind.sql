-- depends: 0007_file_claims
-- The `project` operation kind (the 2-D map of an embedding set, GET /api/v1/map).
-- The CHECK lists exactly chroma.operations.kinds.KINDS (tests/unit/test_operation_kinds.py
-- reads the newest migration that sets it).
ALTER TABLE operations DROP CONSTRAINT operations_kind_check;
ALTER TABLE operations ADD CONSTRAINT operations_kind_check CHECK (kind IN
    ('index', 'reindex', 'fit-mhb', 'recommend', 'compact', 'expire', 'project', 'sleep'));
