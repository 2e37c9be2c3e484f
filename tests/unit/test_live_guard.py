"""``LiveGuard``: when the index host may answer without a catalog check, and which fresh
upserts it takes (``chroma.index.hosting.guard``)."""

from __future__ import annotations

from chroma.index.hosting import LiveGuard


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> float:
        self.now += seconds
        return self.now


def test_a_new_host_checks_every_set_until_its_first_index_run() -> None:
    clock = Clock()
    guard = LiveGuard(clock)
    assert guard.must_verify("s")  # deletes may have landed while no host was up
    guard.applied("s", clock.tick())
    assert not guard.must_verify("s")
    assert guard.must_verify("other")


def test_an_invalidation_holds_until_a_run_that_started_after_it() -> None:
    clock = Clock()
    guard = LiveGuard(clock)
    guard.applied("s", clock.tick())
    started = clock.tick()  # a run starts (its snapshot may miss the delete) ...
    clock.tick()
    guard.invalidate("s")  # ... a delete is committed and invalidates ...
    guard.applied("s", started)  # ... the run ends: it may not have applied the delete
    assert guard.must_verify("s")
    guard.applied("s", clock.tick())  # the next run started after the delete
    assert not guard.must_verify("s")


def test_a_run_that_ends_late_does_not_move_the_clean_mark_back() -> None:
    clock = Clock()
    guard = LiveGuard(clock)
    early = clock.tick()
    guard.invalidate("s")
    late = clock.tick()
    guard.applied("s", late)
    guard.applied("s", early)  # an older run finishing after a newer one
    assert not guard.must_verify("s")


def test_upserts_older_than_the_latest_invalidation_or_the_host_are_refused() -> None:
    clock = Clock()
    before_host = clock.now - 5
    guard = LiveGuard(clock)
    assert not guard.accepts("s", before_host)  # the host cannot know what was deleted
    committed = clock.tick()
    assert guard.accepts("s", committed)
    clock.tick()
    guard.invalidate("s")  # a delete that may have overtaken the commit
    assert not guard.accepts("s", committed)
    assert guard.accepts("s", clock.tick())
    assert guard.accepts("other", committed)  # other sets are not affected
