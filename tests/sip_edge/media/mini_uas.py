"""The least SIP that lets a real SIPp place a call into the edge's media and IVR bridge.

Test scaffolding only, until the edge's SIP side lands: it answers INVITE with the media
session's SDP answer, starts the IVR bridge on ACK, feeds INFO to it, answers BYE and
sends one when the IVR hangs up. No transactions, retransmissions, auth or routing.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass

from nats.aio.client import Client

from hotdesk_sip_edge.media.ivr_bridge import IvrBridge, IvrCommandRouter
from hotdesk_sip_edge.media.session import PromptSource


@dataclass
class Message:
    first_line: str
    headers: list[tuple[str, str]]
    body: bytes

    def header(self, name: str) -> str:
        return next((v for n, v in self.headers if n.lower() == name.lower()), "")

    @property
    def method(self) -> str:
        return "" if self.first_line.startswith("SIP/2.0") else self.first_line.split()[0]


def parse(data: bytes) -> Message:
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = [(n.strip(), v.strip()) for n, _, v in (line.partition(":") for line in lines[1:])]
    return Message(lines[0], headers, body)


@dataclass
class Dialog:
    bridge: IvrBridge
    invite: Message
    addr: tuple[str, int]
    to_tag: str


class MiniUas(asyncio.DatagramProtocol):
    def __init__(
        self,
        nc: Client,
        router: IvrCommandRouter,
        prompts: PromptSource,
        *,
        caller: str,
        edge_id: str,
        port_range: tuple[int, int],
    ) -> None:
        self.nc, self.router, self.prompts = nc, router, prompts
        self.caller, self.edge_id, self.port_range = caller, edge_id, port_range
        self.dialogs: dict[str, Dialog] = {}
        self.transport: asyncio.DatagramTransport | None = None
        self.port = 0
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> MiniUas:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: self, local_addr=("127.0.0.1", 0)
        )
        self.transport = transport
        self.port = transport.get_extra_info("sockname")[1]
        return self

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        if not data.strip():
            return
        task = asyncio.ensure_future(self._handle(parse(data), addr))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _send(self, text: str, body: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        head = text.replace("\n", "\r\n") + f"Content-Length: {len(body)}\r\n\r\n"
        self.transport.sendto(head.encode() + body, addr)

    def _respond(
        self, request: Message, addr: tuple[str, int], to_tag: str, body: bytes = b""
    ) -> None:
        to = request.header("To")
        if ";tag=" not in to:
            to += f";tag={to_tag}"
        text = (
            "SIP/2.0 200 OK\n"
            f"Via: {request.header('Via')}\nFrom: {request.header('From')}\nTo: {to}\n"
            f"Call-ID: {request.header('Call-ID')}\nCSeq: {request.header('CSeq')}\n"
            f"Contact: <sip:hotdesk@127.0.0.1:{self.port}>\n"
        )
        if body:
            text += "Content-Type: application/sdp\n"
        self._send(text, body, addr)

    async def _handle(self, msg: Message, addr: tuple[str, int]) -> None:
        call_id = msg.header("Call-ID")
        dialog = self.dialogs.get(call_id)
        if msg.method == "INVITE" and dialog is None:
            bridge = await IvrBridge.answer_call(
                nc=self.nc,
                edge_id=self.edge_id,
                call_id=call_id,
                send_bye=lambda: self._bye(call_id),
                offer=msg.body,
                local_host="127.0.0.1",
                port_range=self.port_range,
                prompts=self.prompts,
                media_timeout=30.0,
            )
            self.router.add(bridge)
            dialog = Dialog(bridge, msg, addr, uuid.uuid4().hex[:8])
            self.dialogs[call_id] = dialog
            self._respond(msg, addr, dialog.to_tag, bridge.answer)
        elif msg.method == "ACK" and dialog is not None:
            dialled = dialog.invite.first_line.split()[1].removeprefix("sip:").split("@")[0]
            parts = dialled.strip("*").split("*")
            feature, argument = ("logout", "") if parts == ["77", "5"] else ("login", parts[1])
            await dialog.bridge.start(
                caller=self.caller, dialled=dialled, feature=feature, argument=argument
            )
        elif msg.method == "INFO" and dialog is not None:
            self._respond(msg, addr, dialog.to_tag)
            dialog.bridge.on_info(msg.header("Content-Type"), msg.body)
        elif msg.method == "BYE" and dialog is not None:
            self._respond(msg, addr, dialog.to_tag)
            await dialog.bridge.on_bye()

    def _bye(self, call_id: str) -> None:
        dialog = self.dialogs[call_id]
        invite = dialog.invite
        contact = invite.header("Contact").strip("<>").split(">")[0]
        text = (
            f"BYE {contact} SIP/2.0\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex[:12]}\n"
            f"From: {invite.header('To')};tag={dialog.to_tag}\nTo: {invite.header('From')}\n"
            f"Call-ID: {call_id}\nCSeq: 1 BYE\nMax-Forwards: 70\n"
        )
        self._send(text, b"", dialog.addr)
