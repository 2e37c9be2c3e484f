-- Initial catalog: embedding sets, datasets, the file manifest and the record index.

CREATE TABLE embedding_sets (
    key         text PRIMARY KEY,                 -- SHA-1 hex of the canonical JSON of fields
    fields      jsonb NOT NULL,
    dimension   integer NOT NULL CHECK (dimension > 0),
    distance    text NOT NULL DEFAULT 'cosine' CHECK (distance IN ('cosine', 'dot', 'euclid')),
    created_at  timestamptz NOT NULL DEFAULT now(),
    first_log   timestamptz,
    last_log    timestamptz
);

CREATE TABLE datasets (
    id                serial PRIMARY KEY,
    name              text NOT NULL UNIQUE,
    embedding_set_key text NOT NULL REFERENCES embedding_sets (key),
    split             text NOT NULL CHECK (split IN ('training', 'production')),
    record_count      bigint NOT NULL DEFAULT 0,
    retention_days    integer CHECK (retention_days > 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    last_log          timestamptz
);

-- Every change to a record (upsert, tag, delete) takes the next number, so incremental
-- consumers (indexer, recommender) ask "what changed since N".
CREATE SEQUENCE change_seq;

-- One row per immutable parquet file; a file is live until compaction retires it.
CREATE TABLE files (
    id          bigserial PRIMARY KEY,
    dataset_id  integer NOT NULL REFERENCES datasets (id),
    path        text NOT NULL UNIQUE,
    row_count   integer NOT NULL,
    size_bytes  bigint NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    retired_at  timestamptz
);
CREATE INDEX files_dataset_live ON files (dataset_id) WHERE retired_at IS NULL;

-- The record index: where the live version of each record is, and what filters need.
CREATE TABLE records (
    dataset_id      integer NOT NULL REFERENCES datasets (id),
    record_id       text NOT NULL,
    file_id         bigint NOT NULL REFERENCES files (id),
    row_index       integer NOT NULL,
    input_uri       text,
    inference_class text,
    label_class     text,
    tags            text[] NOT NULL DEFAULT '{}',
    logged_at       timestamptz NOT NULL,
    change_seq      bigint NOT NULL DEFAULT nextval('change_seq'),
    PRIMARY KEY (dataset_id, record_id)
);
CREATE INDEX records_change_seq ON records (change_seq);
CREATE INDEX records_file ON records (file_id);

-- Deleted records, kept so that the index can drop their points.
CREATE TABLE deletions (
    dataset_id  integer NOT NULL REFERENCES datasets (id),
    record_id   text NOT NULL,
    change_seq  bigint NOT NULL DEFAULT nextval('change_seq'),
    deleted_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX deletions_change_seq ON deletions (change_seq);
