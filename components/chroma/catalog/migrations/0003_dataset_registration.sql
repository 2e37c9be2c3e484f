-- depends: 0002_operations
-- Datasets can be registered before their first record (PUT /datasets/{name}, the
-- operator's Dataset resource): the embedding set, and its dimension, may come later.

ALTER TABLE embedding_sets ALTER COLUMN dimension DROP NOT NULL;
ALTER TABLE datasets ALTER COLUMN embedding_set_key DROP NOT NULL;
ALTER TABLE datasets ADD COLUMN description text;
