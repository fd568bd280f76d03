"""Transaction state machines (RFC 3261 §17) driven by (message, now)."""

from __future__ import annotations

import itertools

from hotdesk_sip_edge.sip.transaction import (
    T1,
    T2,
    ClientTransaction,
    Send,
    ServerTransaction,
    State,
    TimedOut,
    server_key,
)


def _state(tx: ClientTransaction | ServerTransaction) -> State:
    return tx.state


def _run(tx: ClientTransaction | ServerTransaction, until: float) -> list[tuple[float, object]]:
    fired: list[tuple[float, object]] = []
    while tx.deadline is not None and tx.deadline <= until:
        at = tx.deadline
        fired.extend((at, action) for action in tx.fire(at))
    return fired


def test_invite_client_retransmits_with_doubling_timer_a_until_timer_b() -> None:
    tx = ClientTransaction(b"INVITE", "INVITE", 0.0, reliable=False)
    fired = _run(tx, 100.0)
    sends = [at for at, action in fired if isinstance(action, Send)]
    assert sends[:4] == [T1, 3 * T1, 7 * T1, 15 * T1]
    assert isinstance(fired[-1][1], TimedOut)
    assert fired[-1][0] == 64 * T1
    assert tx.state is State.TERMINATED


def test_provisional_response_stops_invite_retransmissions() -> None:
    tx = ClientTransaction(b"INVITE", "INVITE", 0.0, reliable=False)
    assert tx.receive(180, 0.1)
    assert tx.state is State.PROCEEDING
    fired = _run(tx, 10.0)
    assert not any(isinstance(action, Send) for _, action in fired)


def test_non_invite_client_caps_timer_e_at_t2_and_waits_timer_k() -> None:
    tx = ClientTransaction(b"BYE", "BYE", 0.0, reliable=False)
    fired = _run(tx, 20.0)
    sends = [at for at, action in fired if isinstance(action, Send)]
    gaps = [b - a for a, b in itertools.pairwise(sends)]
    assert max(gaps) == T2
    tx2 = ClientTransaction(b"BYE", "BYE", 0.0, reliable=False)
    assert tx2.receive(200, 1.0)
    assert tx2.state is State.COMPLETED
    assert not tx2.receive(200, 1.5)  # retransmission absorbed
    _run(tx2, 100.0)
    assert _state(tx2) is State.TERMINATED


def test_reliable_transport_never_retransmits() -> None:
    tx = ClientTransaction(b"INVITE", "INVITE", 0.0, reliable=True)
    fired = _run(tx, 100.0)
    assert [type(action) for _, action in fired] == [TimedOut]


def test_invite_server_retransmits_final_until_ack_then_confirms() -> None:
    tx = ServerTransaction("INVITE", 0.0, reliable=False)
    tx.respond(100, b"100", 0.0)
    assert tx.retransmission() == b"100"
    tx.respond(486, b"486", 1.0)
    assert tx.state is State.COMPLETED
    fired = tx.fire(1.0 + T1)
    assert fired == [Send(b"486")]
    tx.ack(2.0)
    assert _state(tx) is State.CONFIRMED
    _run(tx, 20.0)
    assert _state(tx) is State.TERMINATED


def test_invite_server_gives_up_after_timer_h_without_ack() -> None:
    tx = ServerTransaction("INVITE", 0.0, reliable=False)
    tx.respond(486, b"486", 0.0)
    fired = _run(tx, 100.0)
    assert isinstance(fired[-1][1], TimedOut)


def test_non_invite_server_answers_retransmissions_from_its_cache() -> None:
    tx = ServerTransaction("REGISTER", 0.0, reliable=False)
    assert tx.retransmission() is None
    tx.respond(200, b"200", 0.0)
    assert tx.retransmission() == b"200"
    _run(tx, 64 * T1)
    assert tx.state is State.TERMINATED


def test_ack_matches_the_invite_server_transaction_key() -> None:
    assert server_key("z9hG4bKx", "h:5060", "ACK") == server_key("z9hG4bKx", "h:5060", "INVITE")
    assert server_key("z9hG4bKx", "h:5060", "CANCEL") != server_key("z9hG4bKx", "h:5060", "INVITE")


def test_invite_server_absorbs_retransmissions_after_a_2xx_until_timer_l() -> None:
    tx = ServerTransaction("INVITE", 0.0, reliable=False)
    tx.respond(100, b"100", 0.0)
    tx.respond(200, b"200", 1.0)
    assert _state(tx) is State.ACCEPTED
    assert tx.retransmission() is None
    _run(tx, 1.0 + 64 * T1)
    assert _state(tx) is State.TERMINATED
