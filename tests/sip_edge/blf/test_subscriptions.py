"""Dialog-package subscriptions: answers, NOTIFY contents, refresh, expiry, fan-out."""

from __future__ import annotations

import itertools
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hotdesk_sip_edge.blf.dialog_info import Dialog, DialogInfoError, parse
from hotdesk_sip_edge.blf.subscriptions import (
    NotifyToSend,
    SubscribeRequest,
    SubscriptionKey,
    Subscriptions,
)

CALL = Dialog(
    id="d1",
    state="confirmed",
    call_id="c1@host",
    local_tag="a",
    remote_tag="b",
    direction="initiator",
)


def _tags() -> Subscriptions:
    counter = itertools.count(1)
    return Subscriptions(
        ["100", "101"], min_expires=60, max_expires=3600, new_tag=lambda: f"t{next(counter)}"
    )


def _request(ext: str = "100", **changes: object) -> SubscribeRequest:
    request = SubscribeRequest(
        call_id=f"sub-{ext}@phone",
        from_tag="ft",
        to_tag=None,
        cseq=1,
        event="dialog",
        extension=ext,
        entity_uri=f"sip:{ext}@pbx.example.com",
        from_uri="sip:HD0001@pbx.example.com",
        to_uri=f"sip:{ext}@pbx.example.com",
        contact="sip:HD0001@127.0.0.1:5062",
        authenticated=True,
        expires=600,
        accept=("application/dialog-info+xml",),
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def _refresh(notify: NotifyToSend, cseq: int, expires: int) -> SubscribeRequest:
    sub = notify.subscription
    return _request(
        sub.extension,
        call_id=sub.key.call_id,
        from_tag=sub.key.remote_tag,
        to_tag=sub.key.local_tag,
        cseq=cseq,
        expires=expires,
    )


def test_new_subscription_is_accepted_with_an_immediate_notify_of_the_current_state() -> None:
    subs = _tags()
    subs.state_changed("100", [CALL], now=0)
    outcome = subs.subscribe(_request(), now=10)
    assert (outcome.status, outcome.expires, outcome.local_tag) == (200, 600, "t1")
    assert ("Expires", "600") in outcome.headers
    notify = outcome.notify
    assert notify is not None
    assert (notify.cseq, notify.version, notify.subscription_state) == (
        1,
        0,
        "active;expires=600",
    )
    info = parse(notify.body)
    assert (info.entity, info.version, info.state) == ("sip:100@pbx.example.com", 0, "full")
    assert info.dialogs == (CALL,)
    assert notify.subscription.route_set == ()
    assert notify.subscription.remote_target == "sip:HD0001@127.0.0.1:5062"


def test_subscription_to_an_idle_extension_shows_one_terminated_dialog() -> None:
    outcome = _tags().subscribe(_request(), now=0)
    assert outcome.notify is not None
    assert [d.state for d in parse(outcome.notify.body).dialogs] == ["terminated"]


def test_too_short_expires_is_refused_with_min_expires() -> None:
    outcome = _tags().subscribe(_request(expires=30), now=0)
    assert (outcome.status, outcome.reason) == (423, "Interval Too Brief")
    assert outcome.headers == (("Min-Expires", "60"),)
    assert outcome.notify is None


def test_too_long_expires_is_cut_to_the_maximum() -> None:
    outcome = _tags().subscribe(_request(expires=86400), now=0)
    assert outcome.expires == 3600


def test_missing_expires_gets_the_dialog_package_default() -> None:
    outcome = _tags().subscribe(_request(expires=None), now=0)
    assert outcome.expires == 3600


def test_unknown_extension_is_not_found_for_authenticated_subscribers() -> None:
    assert _tags().subscribe(_request("999"), now=0).status == 404


def test_unauthenticated_subscribers_get_the_same_answer_for_known_and_unknown() -> None:
    subs = _tags()
    known = subs.subscribe(_request("100", authenticated=False), now=0)
    unknown = subs.subscribe(_request("999", authenticated=False), now=0)
    assert known.status == unknown.status == 403
    assert len(subs) == 0


def test_other_event_packages_are_refused_with_allow_events() -> None:
    outcome = _tags().subscribe(_request(event="presence"), now=0)
    assert outcome.status == 489
    assert outcome.headers == (("Allow-Events", "dialog"),)


def test_subscriber_that_does_not_accept_dialog_info_gets_406() -> None:
    assert _tags().subscribe(_request(accept=("application/pidf+xml",)), now=0).status == 406
    assert _tags().subscribe(_request(accept=("*/*",)), now=0).status == 200


def test_fetch_with_expires_zero_gets_one_terminated_notify_and_keeps_nothing() -> None:
    subs = _tags()
    outcome = subs.subscribe(_request(expires=0), now=0)
    assert outcome.status == 200
    assert outcome.notify is not None
    assert outcome.notify.subscription_state == "terminated;reason=timeout"
    assert len(subs) == 0


def test_unsubscribe_ends_with_a_final_notify_with_reason_timeout() -> None:
    subs = _tags()
    first = subs.subscribe(_request(), now=0).notify
    assert first is not None
    outcome = subs.subscribe(_refresh(first, cseq=2, expires=0), now=5)
    assert outcome.status == 200
    assert outcome.notify is not None
    assert outcome.notify.terminated
    assert (outcome.notify.cseq, outcome.notify.version) == (2, 1)
    assert len(subs) == 0
    assert subs.state_changed("100", [CALL], now=6) == []


def test_refresh_extends_the_subscription_and_notifies_again() -> None:
    subs = _tags()
    first = subs.subscribe(_request(expires=600), now=0).notify
    assert first is not None
    outcome = subs.subscribe(_refresh(first, cseq=2, expires=600), now=500)
    assert outcome.status == 200
    assert outcome.notify is not None
    assert outcome.notify.subscription_state == "active;expires=600"
    assert outcome.notify.version == 1
    assert subs.expire(now=700) == []
    (final,) = subs.expire(now=1100)
    assert final.subscription_state == "terminated;reason=timeout"


def test_refresh_of_an_unknown_or_expired_subscription_is_481() -> None:
    subs = _tags()
    first = subs.subscribe(_request(expires=60), now=0).notify
    assert first is not None
    stranger = replace(_refresh(first, cseq=2, expires=60), to_tag="nope")
    assert subs.subscribe(stranger, now=1).status == 481
    assert subs.subscribe(_refresh(first, cseq=2, expires=60), now=61).status == 481


def test_refresh_with_an_old_cseq_is_refused() -> None:
    subs = _tags()
    first = subs.subscribe(_request(cseq=5), now=0).notify
    assert first is not None
    assert subs.subscribe(_refresh(first, cseq=5, expires=600), now=1).status == 500


def test_active_notifies_carry_the_time_left() -> None:
    subs = _tags()
    subs.subscribe(_request(expires=600), now=0)
    (notify,) = subs.state_changed("100", [CALL], now=100.5)
    assert notify.subscription_state == "active;expires=500"


def test_state_change_fans_out_to_every_subscription_to_that_extension_only() -> None:
    subs = _tags()
    subs.subscribe(_request("100"), now=0)
    subs.subscribe(_request("100", call_id="other@phone"), now=0)
    subs.subscribe(_request("101"), now=0)
    notifies = subs.state_changed("100", [CALL], now=1)
    assert sorted(n.subscription.key.call_id for n in notifies) == ["other@phone", "sub-100@phone"]
    assert all(parse(n.body).dialogs == (CALL,) for n in notifies)
    assert all(n.version == 1 and n.cseq == 2 for n in notifies)


def test_fan_out_gives_each_subscription_its_own_version_and_entity() -> None:
    subs = _tags()
    subs.subscribe(_request("100"), now=0)
    subs.state_changed("100", [], now=1)
    subs.subscribe(_request("100", call_id="late@phone"), now=2)
    subs.subscribe(
        _request("100", call_id="other-edge@phone", entity_uri="sip:100@edge2.example.com"),
        now=2,
    )
    notifies = subs.state_changed("100", [CALL], now=3)
    seen = {
        n.subscription.key.call_id: (parse(n.body).version, parse(n.body).entity, n.version)
        for n in notifies
    }
    assert seen == {
        "sub-100@phone": (2, "sip:100@pbx.example.com", 2),
        "late@phone": (1, "sip:100@pbx.example.com", 1),
        "other-edge@phone": (1, "sip:100@edge2.example.com", 1),
    }
    assert all(parse(n.body).dialogs == (CALL,) for n in notifies)


def test_a_subscription_after_a_state_change_gets_the_new_state() -> None:
    subs = _tags()
    first = subs.subscribe(_request(), now=0).notify
    assert first is not None
    assert [d.id for d in parse(first.body).dialogs] == ["idle"]
    subs.state_changed("100", [CALL], now=1)
    later = subs.subscribe(_request(call_id="later@phone"), now=2).notify
    assert later is not None
    assert parse(later.body).dialogs == (CALL,)
    subs.state_changed("100", [], now=3)
    (final,) = [n for n in subs.terminate_all(now=4) if n.subscription.key.call_id == "later@phone"]
    assert [d.id for d in parse(final.body).dialogs] == ["idle"]


def test_expired_subscriptions_end_with_timeout_and_get_no_more_notifies() -> None:
    subs = _tags()
    subs.subscribe(_request(expires=60), now=0)
    assert subs.state_changed("100", [CALL], now=60) == []
    (final,) = subs.expire(now=60)
    assert final.subscription_state == "terminated;reason=timeout"
    assert subs.expire(now=61) == []


def test_removed_extension_ends_its_subscriptions_with_noresource() -> None:
    subs = _tags()
    subs.subscribe(_request("100"), now=0)
    subs.subscribe(_request("101"), now=0)
    (final,) = subs.set_extensions(["101"], now=1)
    assert final.subscription.extension == "100"
    assert final.subscription_state == "terminated;reason=noresource"
    assert subs.subscribe(_request("100", call_id="again"), now=2).status == 404


def test_shutdown_deactivates_every_subscription() -> None:
    subs = _tags()
    subs.subscribe(_request("100"), now=0)
    subs.subscribe(_request("101"), now=0)
    finals = subs.terminate_all(now=1)
    assert {n.subscription_state for n in finals} == {"terminated;reason=deactivated"}
    assert len(subs) == 0


def test_dropped_subscription_gets_no_more_notifies() -> None:
    subs = _tags()
    notify = subs.subscribe(_request(), now=0).notify
    assert notify is not None
    subs.drop(notify.subscription.key)
    assert subs.state_changed("100", [CALL], now=1) == []


def test_min_expires_above_max_is_a_configuration_error() -> None:
    with pytest.raises(ValueError, match="min_expires"):
        Subscriptions(min_expires=100, max_expires=10)


# --- properties --------------------------------------------------------------------

_ops = st.lists(
    st.one_of(
        st.tuples(st.just("subscribe"), st.sampled_from(["100", "101"]), st.integers(0, 400)),
        st.tuples(st.just("refresh"), st.integers(0, 5), st.integers(0, 400)),
        st.tuples(st.just("change"), st.sampled_from(["100", "101"]), st.integers(0, 2)),
        st.tuples(st.just("wait"), st.integers(0, 300), st.just(0)),
        st.tuples(st.just("expire"), st.just(0), st.just(0)),
    ),
    max_size=40,
)


@settings(max_examples=200)
@given(_ops)
def test_versions_and_cseqs_increase_fan_out_reaches_live_watchers_and_nothing_follows_the_end(
    ops: list[tuple[str, object, int]],
) -> None:
    subs = _tags()
    now = 0.0
    made: list[NotifyToSend] = []
    sent: list[NotifyToSend] = []
    expected_expiry: dict[SubscriptionKey, float] = {}
    watched: dict[str, set[str]] = {"100": set(), "101": set()}
    shown: dict[str, list[Dialog]] = {}
    cseqs = itertools.count(2)
    for op, arg, value in ops:
        if op == "subscribe":
            outcome = subs.subscribe(
                _request(str(arg), call_id=f"c{len(made)}", expires=value), now
            )
            if outcome.notify is not None:
                made.append(outcome.notify)
                sent.append(outcome.notify)
                if not outcome.notify.terminated:
                    expected_expiry[outcome.notify.subscription.key] = now + value
                    watched[str(arg)].add(outcome.notify.subscription.key.call_id)
        elif op == "refresh" and made:
            first = made[int(str(arg)) % len(made)]
            outcome = subs.subscribe(_refresh(first, next(cseqs), value), now)
            key = first.subscription.key
            if outcome.status == 200:
                assert key in expected_expiry
                assert expected_expiry[key] > now
                assert outcome.notify is not None
                sent.append(outcome.notify)
                if value == 0:
                    del expected_expiry[key]
                else:
                    expected_expiry[key] = now + value
            elif outcome.status == 481:
                assert key not in expected_expiry or expected_expiry[key] <= now
        elif op == "change":
            dialogs = [replace(CALL, id=f"d{i}") for i in range(int(value))]
            fanned = subs.state_changed(str(arg), dialogs, now)
            live = {k for k, at in expected_expiry.items() if at > now}
            # The same dialogs again are no change: nobody is notified.
            unchanged = shown.get(str(arg)) == dialogs
            shown[str(arg)] = dialogs
            assert {n.subscription.key for n in fanned} == {
                k for k in live if k.call_id in watched[str(arg)] and not unchanged
            }
            sent += fanned
        elif op == "wait":
            now += int(str(arg))
        elif op == "expire":
            finals = subs.expire(now)
            sent += finals
            ended = {k for k, at in expected_expiry.items() if at <= now}
            assert {n.subscription.key for n in finals} == ended
            for key in ended:
                del expected_expiry[key]
    ended = {k for k, at in expected_expiry.items() if at <= now}
    assert {n.subscription.key for n in subs.expire(now)} == ended
    assert len(subs) == len(expected_expiry) - len(ended)
    assert len(subs.watching("100")) + len(subs.watching("101")) == len(subs)
    last: dict[SubscriptionKey, NotifyToSend] = {}
    for notify in sent:
        key = notify.subscription.key
        before = last.get(key)
        if before is not None:
            assert not before.terminated
            assert notify.version == before.version + 1
            assert notify.cseq > before.cseq
        else:
            assert notify.version == 0
        assert parse(notify.body).version == notify.version
        last[key] = notify


def test_refusals_of_new_subscriptions_carry_a_to_tag_but_refusals_in_dialog_do_not() -> None:
    subs = _tags()
    refused = subs.subscribe(_request("999"), now=0)
    assert (refused.status, refused.local_tag) == (404, "t1")
    stranger = _request(to_tag="gone", cseq=2)
    in_dialog = subs.subscribe(stranger, now=0)
    assert (in_dialog.status, in_dialog.local_tag) == (481, None)


def test_dialogs_that_cannot_be_rendered_change_nothing() -> None:
    subs = _tags()
    subs.subscribe(_request(), now=0)
    subs.state_changed("100", [CALL], now=1)
    with pytest.raises(DialogInfoError):
        subs.state_changed("100", [replace(CALL, call_id="bad\x00")], now=2)
    # CALL is still what the lamps show: no change, no NOTIFY.
    assert subs.state_changed("100", [CALL], now=3) == []
    (notify,) = subs.state_changed("100", [], now=4)
    assert notify.version == 2


def test_the_dialogs_already_shown_again_notify_nobody() -> None:
    subs = _tags()
    subs.subscribe(_request(), now=0)
    assert len(subs.state_changed("100", [CALL], now=1)) == 1
    assert subs.state_changed("100", [CALL], now=2) == []
    early = replace(CALL, state="early")
    assert [n.version for n in subs.state_changed("100", [early], now=3)] == [2]
    later = subs.subscribe(_request(call_id="later@phone"), now=4).notify
    assert later is not None
    assert parse(later.body).dialogs == (early,)


def test_an_entity_uri_xml_cannot_carry_is_a_bad_request() -> None:
    outcome = _tags().subscribe(_request(entity_uri="sip:100@h\x0b"), now=0)
    assert outcome.status == 400
