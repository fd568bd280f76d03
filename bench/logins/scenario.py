"""The SIPp side of a login: the scenario and the injection file.

One call is one desk logging in: REGISTER with digest (RFC 3261 section 22.2), INVITE
to ``*77*<ext>*`` answered 407 and sent again with credentials (section 22.3), the PIN
and ``#`` as RFC 2833/4733 telephone-events replayed from sip-tester's captures, then
the edge's BYE once the IVR has written the login and played the confirmation.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CAPTURES = Path("/usr/share/sip-tester")
"""Debian sip-tester's RFC 2833 captures, one per DTMF key."""


def capture(digit: str) -> Path:
    """The capture that plays ``digit`` (``0-9``, ``*``, ``#``)."""
    names = {"*": "star", "#": "pound"}
    if digit not in names and not (len(digit) == 1 and digit.isdigit()):
        raise ValueError(f"no RFC 2833 capture for DTMF key {digit!r}")
    return CAPTURES / f"dtmf_2833_{names.get(digit, digit)}.pcap"


_HEAD = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!DOCTYPE scenario SYSTEM "sipp.dtd">
<scenario name="desk logs in">
"""

# The [authentication] keyword comes from the injection file (field1): SIPp does not
# expand fields inside it. field0 = desk, field2 = the extension to log into.
_REGISTER = """  <send retrans="500">
    <![CDATA[
REGISTER sip:[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
Max-Forwards: 70
From: <sip:[field0]@[remote_ip]>;tag=r[pid]SIPpTag[call_number]
To: <sip:[field0]@[remote_ip]>
Call-ID: [call_id]
CSeq: @CSEQ@ REGISTER
Contact: <sip:[field0]@[local_ip]:[local_port]>
Expires: 600
@AUTH@User-Agent: hotdesk-bench
Content-Length: 0

    ]]>
  </send>
"""

_INVITE = """  <send retrans="500">
    <![CDATA[
INVITE sip:*77*[field2]*@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: desk <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag[call_number]
To: <sip:*77*[field2]*@[remote_ip]>
Call-ID: [call_id]
CSeq: @CSEQ@ INVITE
Contact: <sip:[field0]@[local_ip]:[local_port]>
Max-Forwards: 70
@AUTH@Content-Type: application/sdp
Content-Length: [len]

v=0
o=desk 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[local_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 8 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15

    ]]>
  </send>
"""

# The ACK of the 407 is part of the INVITE's transaction (RFC 3261 §17.1.1.3): it carries
# the INVITE's branch, three scenario messages back (INVITE, 100, 407, ACK). With another
# branch the edge does not match it and retransmits the 407 until Timer H.
_ACK_407 = """  <send>
    <![CDATA[
ACK sip:*77*[field2]*@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch-3]
From: desk <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag[call_number]
To: <sip:*77*[field2]*@[remote_ip]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 1 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
"""

_ACK_200 = """  <send>
    <![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
[routes]
From: desk <sip:[field0]@[remote_ip]>;tag=[pid]SIPpTag[call_number]
To: <sip:*77*[field2]*@[remote_ip]>[peer_tag_param]
Call-ID: [call_id]
CSeq: 2 ACK
Max-Forwards: 70
Content-Length: 0

    ]]>
  </send>
"""

_BYE = """  <recv request="BYE" timeout="@BYE_TIMEOUT@"/>
  <send>
    <![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def scenario_xml(
    digits: str, *, answer_pause_ms: int = 500, gap_ms: int = 300, bye_timeout_ms: int = 20000
) -> str:
    """The SIPp scenario of one login typing ``digits`` (the PIN and ``#``)."""
    if not digits:
        raise ValueError("a login types at least one digit")
    plays = "".join(
        f'  <nop><action><exec play_pcap_audio="{capture(d)}"/></action></nop>\n'
        f'  <pause milliseconds="{gap_ms}"/>\n'
        for d in digits
    )
    return "".join(
        [
            _HEAD,
            _REGISTER.replace("@CSEQ@", "1").replace("@AUTH@", ""),
            '  <recv response="401" auth="true"/>\n',
            _REGISTER.replace("@CSEQ@", "2").replace("@AUTH@", "[field1]\n"),
            '  <recv response="200"/>\n',
            _INVITE.replace("@CSEQ@", "1").replace("@AUTH@", ""),
            '  <recv response="100" optional="true"/>\n',
            '  <recv response="407" auth="true"/>\n',
            _ACK_407,
            _INVITE.replace("@CSEQ@", "2").replace("@AUTH@", "[field1]\n"),
            '  <recv response="100" optional="true"/>\n',
            '  <recv response="180" optional="true"/>\n',
            '  <recv response="200" rrs="true"/>\n',
            _ACK_200,
            f'  <pause milliseconds="{answer_pause_ms}"/>\n',
            plays,
            _BYE.replace("@BYE_TIMEOUT@", str(bye_timeout_ms)),
        ]
    )


@dataclass(frozen=True)
class Login:
    """One call of the run: ``desk`` (with its SIP password) logs in as ``user``."""

    desk: str
    password: str
    user: str


def plan(
    desks: Sequence[tuple[str, str]],
    users: Sequence[str],
    first: int,
    count: int,
    seated: Mapping[str, str] | None = None,
) -> list[Login]:
    """Calls ``first`` … ``first + count - 1`` of a run over every desk in turn.

    Desk ``d`` alternates between users ``d`` and ``d + len(desks)``, starting with the
    one not ``seated`` there now (as the ledger says), so every call is a real
    ``LoggedIn`` or ``Roamed`` even after a failed call, and no user is ever seated at
    another desk (no exclusive-policy logout racing the login).
    """
    if len(users) < 2 * len(desks):
        raise ValueError(f"{len(desks)} desks need {2 * len(desks)} users, got {len(users)}")
    seated = seated or {}
    n = len(desks)
    rows = []
    visits = [0] * n
    for k in range(first, first + count):
        d = k % n
        name, password = desks[d]
        start = 1 if seated.get(name) == users[d] else 0
        rows.append(Login(name, password, users[d + n * ((start + visits[d]) % 2)]))
        visits[d] += 1
    return rows


def injection_file(logins: Sequence[Login]) -> str:
    """SIPp's CSV, read in order: desk; its credentials; the extension to log into."""
    lines = ["SEQUENTIAL"]
    for login in logins:
        if any(c in login.desk + login.password + login.user for c in ";[]= \n"):
            raise ValueError(f"desk {login.desk!r} or its password cannot go in a SIPp CSV")
        lines.append(
            f"{login.desk};[authentication username={login.desk} "
            f"password={login.password}];{login.user}"
        )
    return "\n".join(lines) + "\n"
