-- depends: 0003_dataset_registration
-- The labelling queue: production records scored, best first, each with its signals.

CREATE TABLE recommendation_state (
    embedding_set_key text PRIMARY KEY REFERENCES embedding_sets (key),
    mhb_version       integer,
    index_version     integer,
    reference         jsonb,                 -- the scoring reference (ScoringReference)
    scored_seq        bigint NOT NULL DEFAULT 0,
    scored_count      bigint NOT NULL DEFAULT 0,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE recommendations (
    embedding_set_key text NOT NULL,
    dataset_id        integer NOT NULL REFERENCES datasets (id),
    record_id         text NOT NULL,
    score             double precision NOT NULL,
    percentile        real NOT NULL,
    verdict           text NOT NULL,
    signals           jsonb NOT NULL,        -- normalised level per signal (the "why")
    raw_signals       jsonb NOT NULL,
    input_uri         text,
    inference_class   text,
    tags              text[] NOT NULL DEFAULT '{}',
    logged_at         timestamptz NOT NULL,
    labelled          boolean NOT NULL DEFAULT false,
    mhb_version       integer,
    scored_at         timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (dataset_id, record_id)
);
CREATE INDEX recommendations_rank
    ON recommendations (embedding_set_key, score DESC, dataset_id DESC, record_id DESC)
    WHERE NOT labelled;
