"""The lean pull reader cuts NATS frames correctly however the bytes are split."""

from __future__ import annotations

from hotdesk_ledger.pull import RawPull


def frames() -> bytes:
    payload = b'{"type":"LoggedIn"}'
    headers = b"NATS/1.0\r\nNats-Msg-Id: c1:0\r\n\r\n"
    status = b"NATS/1.0 408 Request Timeout\r\n\r\n"
    return (
        b"+OK\r\n"
        + b"MSG hotdesk.ledger.desk.HD0001 1 $JS.ACK.S.C.1.5.1.0.2 %d\r\n%s\r\n"
        % (len(payload), payload)
        + b"HMSG hotdesk.ledger.desk.HD0002 1 $JS.ACK.S.C.1.6.2.0.1 %d %d\r\n%s%s\r\n"
        % (len(headers), len(headers) + len(payload), headers, payload)
        + b"HMSG _INBOX.x 1 %d %d\r\n%s\r\n" % (len(status), len(status), status)
    )


def test_messages_with_and_without_headers_and_a_status_are_told_apart() -> None:
    data = frames()
    for cut in range(1, len(data)):
        reader = RawPull("nats://127.0.0.1:1")
        reader._wanted = 10
        reader._buf += data[:cut]
        reader._parse()
        reader._buf += data[cut:]
        reader._parse()
        assert reader._batch == [
            ("hotdesk.ledger.desk.HD0001", "$JS.ACK.S.C.1.5.1.0.2", b'{"type":"LoggedIn"}'),
            ("hotdesk.ledger.desk.HD0002", "$JS.ACK.S.C.1.6.2.0.1", b'{"type":"LoggedIn"}'),
        ], cut
        assert reader._done.is_set()  # the 408 ended the pull
        assert reader._buf == b""
