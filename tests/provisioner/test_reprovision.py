"""The reprovision tracker: every path from NOTIFY to confirmed or failed."""

from __future__ import annotations

from hotdesk_provisioner.reprovision import (
    Confirmed,
    Failed,
    ReprovisionTracker,
    SendNotify,
    Stage,
    TrackerSettings,
)

SETTINGS = TrackerSettings(retries=2, retry_backoff_seconds=5.0, stage_timeout_seconds=10.0)
EVENT = "check-sync;reboot=false"


def started(now: float = 0.0) -> ReprovisionTracker:
    tracker = ReprovisionTracker(SETTINGS)
    assert tracker.start("HD0001", "r1", "v2", EVENT, now) == [SendNotify("HD0001", EVENT, "r1", 1)]
    return tracker


def test_notify_answered_then_fetch_then_register_confirms() -> None:
    tracker = started()
    assert tracker.notify_answered("HD0001", "r1", 200, 1, 1.0) == []
    assert tracker.fetched("HD0001", "v2", 2.0) == []
    assert tracker.registered("HD0001", 3.0) == [Confirmed("HD0001", "r1", "v2", 1)]
    assert tracker.get("HD0001") is None


def test_a_registration_before_the_fetch_does_not_confirm() -> None:
    tracker = started()
    tracker.notify_answered("HD0001", "r1", 200, 1, 1.0)
    assert tracker.registered("HD0001", 2.0) == []
    assert tracker.get("HD0001").stage is Stage.FETCH  # type: ignore[union-attr]


def test_an_old_config_version_fetched_does_not_count() -> None:
    tracker = started()
    tracker.notify_answered("HD0001", "r1", 200, 1, 1.0)
    tracker.fetched("HD0001", "v1", 2.0)
    assert tracker.registered("HD0001", 3.0) == []


def test_a_fetch_of_the_newest_rendered_version_counts_for_an_older_reprovision() -> None:
    tracker = started()
    tracker.notify_answered("HD0001", "r1", 200, 1, 1.0)
    tracker.fetched("HD0001", "v3", 2.0, newest="v3")
    assert tracker.registered("HD0001", 3.0) == [Confirmed("HD0001", "r1", "v2", 1)]


def test_a_fetch_neither_wanted_nor_newest_does_not_count() -> None:
    tracker = started()
    tracker.notify_answered("HD0001", "r1", 200, 1, 1.0)
    tracker.fetched("HD0001", "v1", 2.0, newest="v3")
    assert tracker.registered("HD0001", 3.0) == []


def test_fetch_overtaking_the_notify_answer_still_counts() -> None:
    tracker = started()
    tracker.fetched("HD0001", "v2", 0.5)
    tracker.notify_answered("HD0001", "r1", 200, 1, 1.0)
    assert tracker.registered("HD0001", 2.0) == [Confirmed("HD0001", "r1", "v2", 1)]


def test_a_refused_notify_is_retried_after_backoff() -> None:
    tracker = started()
    assert tracker.notify_answered("HD0001", "r1", 481, 1, 1.0) == []
    assert tracker.get("HD0001").stage is Stage.BACKOFF  # type: ignore[union-attr]
    assert tracker.next_deadline() == 6.0
    assert tracker.tick(5.9) == []
    assert tracker.tick(6.0) == [SendNotify("HD0001", EVENT, "r1", 2)]


def test_backoff_doubles_each_attempt_and_then_the_reprovision_fails_at_notify() -> None:
    tracker = started()
    # attempt 1 times out at 10, waits 5
    assert tracker.tick(10.0) == []
    assert tracker.next_deadline() == 15.0
    assert tracker.tick(15.0) == [SendNotify("HD0001", EVENT, "r1", 2)]
    # attempt 2 times out at 25, waits 10
    assert tracker.tick(25.0) == []
    assert tracker.next_deadline() == 35.0
    assert tracker.tick(35.0) == [SendNotify("HD0001", EVENT, "r1", 3)]
    # attempt 3 (the last of 1 + 2 retries) times out: failed
    assert tracker.tick(45.0) == [Failed("HD0001", "r1", "v2", 3, "notify")]
    assert tracker.get("HD0001") is None


def test_a_desk_that_never_fetches_fails_at_fetch() -> None:
    tracker = started()
    now = 0.0
    actions: list[object] = []
    for attempt in range(1, 4):
        tracker.notify_answered("HD0001", "r1", 200, 1, now)
        now += 10.0
        actions = list(tracker.tick(now))
        if attempt < 3:
            assert actions == []
            now = tracker.next_deadline()  # type: ignore[assignment]
            assert tracker.tick(now) == [SendNotify("HD0001", EVENT, "r1", attempt + 1)]
    assert actions == [Failed("HD0001", "r1", "v2", 3, "fetch")]


def test_a_desk_that_fetches_but_never_registers_fails_at_register() -> None:
    tracker = ReprovisionTracker(TrackerSettings(retries=0, stage_timeout_seconds=10.0))
    tracker.start("HD0001", "r1", "v2", EVENT, 0.0)
    tracker.notify_answered("HD0001", "r1", 200, 1, 1.0)
    tracker.fetched("HD0001", "v2", 2.0)
    assert tracker.tick(11.9) == []
    assert tracker.tick(12.0) == [Failed("HD0001", "r1", "v2", 1, "register")]


def test_an_offline_desk_waits_without_using_attempts_and_goes_on_when_it_registers() -> None:
    tracker = started()
    assert tracker.notify_answered("HD0001", "r1", 0, 0, 1.0) == []
    assert tracker.get("HD0001").stage is Stage.OFFLINE  # type: ignore[union-attr]
    assert tracker.tick(10_000.0) == []
    assert tracker.registered("HD0001", 10_001.0) == [SendNotify("HD0001", EVENT, "r1", 1)]
    tracker.notify_answered("HD0001", "r1", 200, 1, 10_002.0)
    tracker.fetched("HD0001", "v2", 10_003.0)
    assert tracker.registered("HD0001", 10_004.0) == [Confirmed("HD0001", "r1", "v2", 1)]


def test_an_offline_desk_that_boots_fetches_and_registers_is_confirmed() -> None:
    tracker = started()
    tracker.notify_answered("HD0001", "r1", 0, 0, 1.0)
    tracker.fetched("HD0001", "v2", 50.0)
    assert tracker.registered("HD0001", 51.0) == [Confirmed("HD0001", "r1", "v2", 1)]


def test_a_newer_reprovision_replaces_the_older_one() -> None:
    tracker = started()
    assert tracker.start("HD0001", "r2", "v3", EVENT, 1.0) == [SendNotify("HD0001", EVENT, "r2", 1)]
    # the answer for the old one is ignored
    assert tracker.notify_answered("HD0001", "r1", 200, 1, 2.0) == []
    assert tracker.get("HD0001").stage is Stage.NOTIFY  # type: ignore[union-attr]
    tracker.notify_answered("HD0001", "r2", 200, 1, 2.0)
    tracker.fetched("HD0001", "v3", 3.0)
    assert tracker.registered("HD0001", 4.0) == [Confirmed("HD0001", "r2", "v3", 1)]


def test_desks_are_tracked_independently() -> None:
    tracker = started()
    tracker.start("HD0002", "r9", "v9", "resync", 0.0)
    tracker.notify_answered("HD0002", "r9", 200, 1, 1.0)
    tracker.fetched("HD0002", "v9", 2.0)
    assert tracker.registered("HD0002", 3.0) == [Confirmed("HD0002", "r9", "v9", 1)]
    assert tracker.get("HD0001") is not None


def test_events_for_desks_without_a_reprovision_are_ignored() -> None:
    tracker = ReprovisionTracker(SETTINGS)
    assert tracker.fetched("HD0001", "v1", 0.0) == []
    assert tracker.registered("HD0001", 0.0) == []
    assert tracker.notify_answered("HD0001", "r1", 200, 1, 0.0) == []
    assert tracker.next_deadline() is None
