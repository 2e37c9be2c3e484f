-- depends: 0006_wakeups
-- Files being written. A writer claims a path here, in a transaction of its own that
-- commits BEFORE the file is written; the transaction that records the file in `files`
-- deletes the claim (and refuses to commit if the claim is gone). The sweep keeps every
-- path in `files` or here, and deletes a claimed file only after deleting its expired
-- claim itself: whoever deletes the claim row decides the file's fate, so a sweep can
-- never remove a file that a commit still references (Catalog.claim_files et seq.).
CREATE TABLE file_claims (
    path        text PRIMARY KEY,
    claimed_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX file_claims_expiry ON file_claims (expires_at);
