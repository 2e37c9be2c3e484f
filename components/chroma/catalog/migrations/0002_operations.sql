-- depends: 0001_initial
-- Service control: operations (a queue with leases), their runs, component heartbeats,
-- and the freshness of each embedding set's vector index.

CREATE TABLE operations (
    id                bigserial PRIMARY KEY,
    kind              text NOT NULL CHECK (kind IN
                        ('index', 'reindex', 'fit-mhb', 'recommend', 'compact', 'expire', 'sleep')),
    embedding_set_key text,                    -- NULL: every embedding set
    params            jsonb NOT NULL DEFAULT '{}',
    state             text NOT NULL DEFAULT 'queued'
                        CHECK (state IN ('queued', 'running', 'succeeded', 'failed', 'cancelled')),
    progress          real NOT NULL DEFAULT 0 CHECK (progress BETWEEN 0 AND 1),
    message           text,
    attempts          integer NOT NULL DEFAULT 0,
    max_attempts      integer NOT NULL DEFAULT 3,
    requested_by      text NOT NULL DEFAULT 'api',
    cancel_requested  boolean NOT NULL DEFAULT false,
    lease_owner       text,
    lease_expires_at  timestamptz,
    retry_at          timestamptz,              -- a failed attempt waits until then
    created_at        timestamptz NOT NULL DEFAULT now(),
    started_at        timestamptz,
    finished_at       timestamptz,
    result            jsonb,
    error             text
);
-- At most one queued-or-running operation per (kind, embedding set): duplicates coalesce.
CREATE UNIQUE INDEX operations_one_active
    ON operations (kind, COALESCE(embedding_set_key, ''))
    WHERE state IN ('queued', 'running');
CREATE INDEX operations_claimable ON operations (created_at) WHERE state IN ('queued', 'running');

-- Every attempt at an operation: who ran it, when, and how it ended.
CREATE TABLE operation_runs (
    id            bigserial PRIMARY KEY,
    operation_id  bigint NOT NULL REFERENCES operations (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    owner         text NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT now(),
    finished_at   timestamptz,
    outcome       text          -- succeeded, failed, cancelled, lost (lease expired)
);

-- Each running process says it is alive; the supervisor (or the pod) owns the row.
CREATE TABLE components (
    name          text PRIMARY KEY,             -- e.g. api, indexer, api@pod-name
    kind          text NOT NULL,                -- api, worker
    pid           integer,
    host          text,
    state         text NOT NULL DEFAULT 'starting',
    started_at    timestamptz,
    heartbeat_at  timestamptz,
    restarts      integer NOT NULL DEFAULT 0,
    kinds         text[] NOT NULL DEFAULT '{}', -- operation kinds a worker takes
    last_error    text
);

-- What the vector index holds for each embedding set (written by the indexer).
CREATE TABLE index_state (
    embedding_set_key text PRIMARY KEY REFERENCES embedding_sets (key),
    collection        text,
    version           integer NOT NULL DEFAULT 0,
    indexed_seq       bigint NOT NULL DEFAULT 0,   -- change_seq consumed so far
    indexed_count     bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Versions of MHB models per embedding set (written by the fit-mhb operation).
CREATE TABLE mhb_models (
    embedding_set_key text NOT NULL REFERENCES embedding_sets (key),
    version           integer NOT NULL,
    path              text NOT NULL,
    fingerprint       text NOT NULL,
    training_count    bigint NOT NULL,
    created_at        timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (embedding_set_key, version)
);
