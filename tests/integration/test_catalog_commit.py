"""The record index rows COPY'd as CSV come back exactly as logged, on both commit paths.

Both paths (all ids new: COPY into ``records``; some ids known: COPY into a temporary
table, then upsert) carry strings that CSV and ``text[]`` literals must escape, and keep
null apart from the empty string.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from chroma.catalog import Catalog, Database, FileCommit, apply_migrations
from chroma.catalog.copying import pg_text_array
from chroma.keys import embedding_set_key

pytestmark = pytest.mark.integration

AWKWARD = ['plain', '', 'q"uote', 'back\\slash', 'new\nline', 'comma,brace{}', 'ünï ☃',
           'NULL', '\\N', "tab\there"]


@pytest.fixture
def catalog(database_url: str) -> Iterator[Catalog]:
    apply_migrations(database_url)
    db = Database(database_url)
    db.open()
    yield Catalog(db)
    db.close()


def commit(catalog: Catalog, dataset_id: int, path: str, ids: list[str],
           *, label: str) -> list[int]:
    n = len(ids)
    catalog.claim_files([path])  # as every writer does before writing the file
    outcome = catalog.commit_files([FileCommit(
        dataset_id=dataset_id, path=path, size_bytes=1, record_ids=ids,
        input_uris=[AWKWARD[i % len(AWKWARD)] if i % 3 else None for i in range(n)],
        inference_classes=[None if i % 2 else AWKWARD[i % len(AWKWARD)] for i in range(n)],
        label_classes=[label] * n,
        tags=[AWKWARD[: i % 4] if i % 5 else [] for i in range(n)],
        logged_at=datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC),
    )])[0]
    return [outcome.inserted, outcome.updated]


def test_awkward_strings_round_trip_through_both_copy_paths(catalog: Catalog, uid: str) -> None:
    es = {"model": "catalog-copy", "run": uid}
    dataset_id = catalog.bind(embedding_set_key(es), es, 4, f"copy-{uid}", "training")
    ids = [f"id-{i}" for i in range(12)] + AWKWARD[1:]  # ids are strings too
    assert commit(catalog, dataset_id, f"{uid}/a.parquet", ids, label="first") == [len(ids), 0]
    # Half known, half new: the upsert path.
    again = [*ids[::2], "fresh-1", "fresh-2"]
    assert commit(catalog, dataset_id, f"{uid}/b.parquet", again, label="second") == [
        2, len(ids[::2])]

    rows = {r.record_id: r for r in catalog.list_records(f"copy-{uid}", limit=1000)}
    assert set(rows) == set(ids) | {"fresh-1", "fresh-2"}
    for batch, label in ((ids, "first"), (again, "second")):
        for i, record_id in enumerate(batch):
            if label == "first" and record_id in again:
                continue  # replaced by the second commit
            row = rows[record_id]
            assert row.row_index == i
            assert row.label_class == label
            assert row.input_uri == (AWKWARD[i % len(AWKWARD)] if i % 3 else None)
            assert row.inference_class == (None if i % 2 else AWKWARD[i % len(AWKWARD)])
            assert row.tags == (AWKWARD[: i % 4] if i % 5 else [])
            assert row.logged_at == datetime(2026, 11, 26, 12, 0, 0, 123456, tzinfo=UTC)
    assert catalog.get_dataset(f"copy-{uid}").record_count == len(ids) + 2


def test_text_array_literals() -> None:
    assert pg_text_array([]) == "{}"
    assert pg_text_array(['a', 'b"c', 'd\\e']) == '{"a","b\\"c","d\\\\e"}'


def test_latest_seq_waits_for_a_writer_holding_lower_numbers(
    catalog: Catalog, database_url: str, uid: str
) -> None:
    """A commit that took change numbers first but commits last is not skipped.

    Writer A takes its numbers and stays open; B (a tag change) takes a higher number and
    commits. A consumer reading "everything up to latest_seq" must not get B's number
    while A is open, or it would never read A's records.
    """
    import threading

    import psycopg

    from chroma.catalog.changes import writing_changes

    es = {"model": "catalog-seq", "run": uid}
    key = embedding_set_key(es)
    dataset_id = catalog.bind(key, es, 4, f"seq-{uid}", "training")
    commit(catalog, dataset_id, f"{uid}/first.parquet", ["b"], label="x")
    changes = catalog.changes

    with psycopg.connect(database_url) as writer_a:
        writing_changes(writer_a)
        (file_id,) = writer_a.execute(
            "INSERT INTO files (dataset_id, path, row_count, size_bytes)"
            " VALUES (%s, %s, 1, 1) RETURNING id", (dataset_id, f"{uid}/a.parquet")).fetchone()
        (seq_a,) = writer_a.execute(
            "INSERT INTO records (dataset_id, record_id, file_id, row_index, logged_at)"
            " VALUES (%s, 'a', %s, 0, now()) RETURNING change_seq",
            (dataset_id, file_id)).fetchone()
        catalog.tag_records(f"seq-{uid}", ["b"], add=["later"])  # B commits a higher number

        answer: list[int] = []
        reader = threading.Thread(target=lambda: answer.append(changes.latest_seq(key)))
        reader.start()
        reader.join(0.5)
        assert reader.is_alive(), "latest_seq answered while a lower number was in flight"
        writer_a.commit()
    reader.join(10)
    assert answer and answer[0] > seq_a
    seen = {r.record_id for r in changes.records_since(key, 0, up_to_seq=answer[0])}
    assert seen == {"a", "b"}


def test_queue_upsert_round_trips_and_rescoring_replaces(catalog: Catalog, uid: str) -> None:
    """The labelling queue's COPY path: every field back as written (signals that are not
    finite left out of the JSON); a rescore replaces."""
    import numpy as np
    import pyarrow as pa

    from chroma.catalog import ScoredPage
    from chroma.catalog.copying import pg_text_array

    es = {"model": "queue-copy", "run": uid}
    key = embedding_set_key(es)
    catalog.bind(key, es, 4, f"queue-{uid}", "production")
    queue = catalog.queue
    at = datetime(2026, 11, 26, 9, 30, 0, 250000, tzinfo=UTC)

    def scored(indices: list[int], score: list[float]) -> ScoredPage:
        records = pa.table({
            "dataset": [f"queue-{uid}"] * len(indices),
            "record_id": [AWKWARD[i % len(AWKWARD)] or "empty" for i in indices],
            "input_uri": [None if i % 2 else AWKWARD[i] for i in indices],
            "inference_class": [AWKWARD[i] or None for i in indices],
            "tags": [pg_text_array(AWKWARD[: i % 4]) for i in indices],
            "logged_at": pa.array([at] * len(indices), pa.timestamp("us", tz="UTC")),
            "labelled": [False] * len(indices),
        })
        values = np.array(score)
        return ScoredPage(
            records=records, score=values, percentile=values * 100,
            label=np.array([i != 0 for i in indices]),
            signals={"mhb": values, "knn": np.full(len(indices), np.nan)},
            raw_signals={"mhb": 3.5 + np.array(indices, dtype=float),
                         "inf": np.where(np.array(indices) % 2 == 1, np.inf, 1.0)})

    indices = list(range(len(AWKWARD)))
    queue.upsert(key, scored(indices, [0.05 * (i + 1) for i in indices]), mhb_version=1)
    queue.upsert(key, scored([0], [0.99]), mhb_version=2)  # rescored: replaced, not added

    entries = {e.record_id: e for e in queue.page(key, limit=100)}
    assert len(entries) == len(indices) == queue.count(key)
    first = AWKWARD[0] or "empty"
    assert next(iter(entries.values())).record_id == first  # now the best
    for i in indices:
        entry = entries[AWKWARD[i % len(AWKWARD)] or "empty"]
        score = 0.99 if i == 0 else 0.05 * (i + 1)
        assert entry.score == score
        assert entry.percentile == pytest.approx(score * 100)
        assert entry.verdict == ("ok" if i == 0 else "label")
        assert entry.signals == {"mhb": score}  # NaN: not in the JSON
        assert entry.raw_signals == ({"mhb": 3.5 + i} if i % 2 else {"mhb": 3.5 + i, "inf": 1.0})
        assert (entry.input_uri, entry.inference_class, entry.tags, entry.logged_at) == (
            None if i % 2 else AWKWARD[i], AWKWARD[i] or None, AWKWARD[: i % 4], at)



def test_a_commit_and_a_first_bind_elsewhere_do_not_deadlock(
    catalog: Catalog, database_url: str, uid: str
) -> None:
    """Another API process binding the dataset (set row, then dataset row) while this one
    commits to it: both finish. The commit used to lock the dataset row first."""
    import threading

    import psycopg

    es = {"model": "catalog-deadlock", "run": uid}
    key = embedding_set_key(es)
    dataset_id = catalog.bind(key, es, 4, f"dl-{uid}", "training")
    errors: list[BaseException] = []

    def commit_elsewhere() -> None:
        try:
            commit(catalog, dataset_id, f"{uid}/c.parquet", ["x", "y"], label="z")
        except BaseException as exc:  # reported below
            errors.append(exc)

    with psycopg.connect(database_url) as binder:
        binder.execute("SET deadlock_timeout = '200ms'")
        # ``bind``'s first half: the embedding set's row is locked...
        binder.execute("UPDATE embedding_sets SET dimension = COALESCE(dimension, 4)"
                       " WHERE key = %s", (key,))
        committer = threading.Thread(target=commit_elsewhere)
        committer.start()
        committer.join(1.0)  # ...the commit starts meanwhile and waits where it must...
        # ...then bind's second half locks the dataset's row.
        binder.execute("SELECT id FROM datasets WHERE name = %s FOR UPDATE", (f"dl-{uid}",))
        binder.commit()
    committer.join(10)
    assert not committer.is_alive() and not errors, errors
    assert catalog.get_dataset(f"dl-{uid}").record_count == 2


def test_record_columns_read_by_copy_are_the_stored_records(catalog: Catalog, uid: str) -> None:
    """``record_columns_since`` (COPY out, parsed by Arrow) reads what ``records_since``
    (row objects) reads: awkward strings, null apart from the empty string, tags and
    times as PostgreSQL reads them back, labelled or not, paging by change number."""
    es = {"model": "catalog-columns", "run": uid}
    key = embedding_set_key(es)
    dataset_id = catalog.bind(key, es, 4, f"columns-{uid}", "production")
    ids = [f"id-{i}" for i in range(12)] + AWKWARD[1:]
    commit(catalog, dataset_id, f"{uid}/a.parquet", ids, label="first")
    commit(catalog, dataset_id, f"{uid}/b.parquet", ids[:3], label="second")
    changes = catalog.changes
    rows = changes.records_since(key, 0)
    assert len(rows) == len(ids)

    table = changes.record_columns_since(key, 0, split="production")
    assert table.column("record_id").to_pylist() == [r.record_id for r in rows]
    assert table.column("dataset").to_pylist() == [r.dataset for r in rows]
    assert table.column("file_path").to_pylist() == [r.file_path for r in rows]
    assert table.column("row_index").to_pylist() == [r.row_index for r in rows]
    assert table.column("input_uri").to_pylist() == [r.input_uri for r in rows]
    assert table.column("inference_class").to_pylist() == [r.inference_class for r in rows]
    assert table.column("labelled").to_pylist() == [True] * len(rows)
    assert table.column("change_seq").to_pylist() == [r.change_seq for r in rows]
    with catalog.db.transaction() as conn:  # text as PostgreSQL parses it back
        parsed = [conn.execute("SELECT %s::text[], %s::timestamptz", (tags, at)).fetchone()
                  for tags, at in zip(table.column("tags").to_pylist(),
                                      table.column("logged_at").to_pylist(), strict=True)]
    assert [(list(tags), at) for tags, at in parsed] == [(r.tags, r.logged_at) for r in rows]

    first = changes.record_columns_since(key, 0, limit=5)
    rest = changes.record_columns_since(key, first.column("change_seq")[-1].as_py(),
                                        up_to_seq=rows[-2].change_seq)
    assert first.column("record_id").to_pylist() + rest.column("record_id").to_pylist() == [
        r.record_id for r in rows[:-1]]
    assert changes.record_columns_since(key, rows[-1].change_seq).num_rows == 0
    assert changes.record_columns_since(key, 0, split="training").num_rows == 0


def production_sets(catalog: Catalog, uid: str, prefix: str,
                    *names: str) -> list[tuple[str, int]]:
    """(set key, production dataset id) of one new embedding set per name."""
    sets = []
    for name in names:
        es = {"model": f"catalog-{prefix}-{name}", "run": uid}
        key = embedding_set_key(es)
        sets.append((key, catalog.bind(key, es, 4, f"{prefix}-{name}-{uid}", "production")))
    return sets


def test_record_column_pages_cross_other_sets_changes(catalog: Catalog, uid: str) -> None:
    """Pages read by ranges of change numbers: another set's records between the set's
    (more of them than a page, so whole ranges hold none of the set's) are skipped, and
    every record of the set comes once, in change order."""
    (mine, mine_id), (_, other_id) = production_sets(catalog, uid, "pages", "mine", "other")
    commit(catalog, mine_id, f"{uid}/m1.parquet", [f"a{i}" for i in range(7)], label="x")
    commit(catalog, other_id, f"{uid}/o1.parquet", [f"o{i}" for i in range(60)], label="x")
    commit(catalog, mine_id, f"{uid}/m2.parquet", [f"b{i}" for i in range(4)], label="x")
    commit(catalog, other_id, f"{uid}/o2.parquet", [f"p{i}" for i in range(30)], label="x")
    changes = catalog.changes
    want = [r.record_id for r in changes.records_since(mine, 0)]
    assert len(want) == 11

    got: list[str] = []
    after = 0
    while (page := changes.record_columns_since(mine, after, limit=3)).num_rows:
        assert page.num_rows <= 3
        got += page.column("record_id").to_pylist()
        after = page.column("change_seq")[-1].as_py()
    assert got == want


def test_record_pages_cross_other_sets_changes_split_and_bound(catalog: Catalog, uid: str) -> None:
    """``iter_records_since`` (the indexer's and the training load's walk) reads by the
    same ranges of change numbers: another set's records between this set's, the split
    filter and ``up_to_seq`` give exactly the records one unpaged read gives, once each."""
    (mine, mine_id), (noise_key, noise_id) = production_sets(catalog, uid, "walk", "walk",
                                                              "noise")
    training_id = catalog.bind(mine, {"model": "catalog-walk-walk", "run": uid}, 4,
                               f"walk-train-{uid}", "training")
    commit(catalog, mine_id, f"{uid}/w1.parquet", [f"a{i}" for i in range(5)], label="x")
    commit(catalog, noise_id, f"{uid}/n1.parquet", [f"n{i}" for i in range(40)], label="x")
    commit(catalog, training_id, f"{uid}/t1.parquet", [f"t{i}" for i in range(6)], label="x")
    bound = catalog.changes.latest_seq(mine)
    commit(catalog, noise_id, f"{uid}/n2.parquet", [f"m{i}" for i in range(25)], label="x")
    commit(catalog, mine_id, f"{uid}/w2.parquet", [f"b{i}" for i in range(3)], label="x")
    changes = catalog.changes

    def walk(**kwargs: object) -> list[str]:
        return [r.record_id for page in changes.iter_records_since(mine, 0, page=2, **kwargs)
                for r in page]

    assert walk() == [f"a{i}" for i in range(5)] + [f"t{i}" for i in range(6)] + ["b0", "b1", "b2"]
    assert walk(split="training") == [f"t{i}" for i in range(6)]
    assert walk(up_to_seq=bound) == [f"a{i}" for i in range(5)] + [f"t{i}" for i in range(6)]
    assert all(len(page) <= 2 for page in changes.iter_records_since(mine, 0, page=2))
    assert [r.record_id for r in changes.records_since(noise_key, 0)] == (
        [f"n{i}" for i in range(40)] + [f"m{i}" for i in range(25)])
