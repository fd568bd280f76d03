"""RFC 4235 ``application/dialog-info+xml`` bodies: render and parse.

The renderer writes the layout Yealink notifiers send (attributes in the order
``id``, ``call-id``, ``local-tag``, ``remote-tag``, ``direction``; CRLF line ends), so a
body that round-trips through :func:`parse` and :func:`render` is byte-identical to the
captured Yealink NOTIFY bodies. Two interoperability rules shape it:

- a document always carries at least one ``<dialog>``: Yealink lamps misbehave on a
  NOTIFY without one, so an idle entity is shown as one terminated dialog with a stable
  id (:data:`IDLE_DIALOG_ID`);
- ``call-id``, ``local-tag``, ``remote-tag`` and ``direction`` are written whenever they
  are known: Polycom directed pickup from a BLF key needs them (RFC 4235 section 4.1.1
  makes them optional, the phones do not).
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Literal, get_args
from xml.sax.saxutils import escape, quoteattr

CONTENT_TYPE = "application/dialog-info+xml"
NAMESPACE = "urn:ietf:params:xml:ns:dialog-info"
IDLE_DIALOG_ID = "idle"
"""The id of the terminated dialog that stands for "no dialog at all"."""

Direction = Literal["initiator", "recipient"]
DialogState = Literal["trying", "proceeding", "early", "confirmed", "terminated"]
DocumentState = Literal["full", "partial"]

_DIRECTIONS: frozenset[str] = frozenset(get_args(Direction))
_DIALOG_STATES: frozenset[str] = frozenset(get_args(DialogState))
_DOCUMENT_STATES: frozenset[str] = frozenset(get_args(DocumentState))
_NS = "{" + NAMESPACE + "}"
_EOL = "\r\n"
# XML 1.0 section 2.2 Char: what a document may carry at all (no escape exists for the rest).
_NOT_XML_CHAR = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


class DialogInfoError(ValueError):
    """A dialog-info document that cannot be rendered or parsed, with the reason."""


@dataclass(frozen=True, slots=True)
class Participant:
    """The ``<local>`` or ``<remote>`` element of a dialog (RFC 4235 section 4.1.6)."""

    identity: str = ""
    """The participant's URI (the ``<identity>`` text)."""
    display: str = ""
    """The ``display`` attribute of ``<identity>`` (a name the phone may show)."""
    target: str = ""
    """The ``uri`` of ``<target>``: where the participant can be reached."""


@dataclass(frozen=True, slots=True)
class Dialog:
    """One ``<dialog>`` element (RFC 4235 section 4.1.1).

    Empty strings mean "not known" and leave the attribute out.
    """

    id: str
    state: DialogState
    call_id: str = ""
    local_tag: str = ""
    remote_tag: str = ""
    direction: Direction | None = None
    event: str = ""
    """The ``event`` attribute of ``<state>`` (``cancelled``, ``rejected``, ``local-bye``
    …; RFC 4235 section 4.1.2)."""
    local: Participant | None = None
    remote: Participant | None = None


@dataclass(frozen=True, slots=True)
class DialogInfo:
    """A parsed ``<dialog-info>`` document (RFC 4235 section 4.1)."""

    entity: str
    version: int
    state: DocumentState
    dialogs: tuple[Dialog, ...]


def idle_dialog() -> Dialog:
    """The dialog that stands for an idle entity (a terminated one with a stable id)."""
    return Dialog(id=IDLE_DIALOG_ID, state="terminated")


def _checked(value: str) -> str:
    bad = _NOT_XML_CHAR.search(value)
    if bad:
        raise DialogInfoError(f"{value[:40]!r} holds {bad.group()!r}, which XML cannot carry")
    return value


def _attr(value: str) -> str:
    return quoteattr(_checked(value))


def _participant(tag: str, who: Participant) -> list[str]:
    lines = [f"<{tag}>"]
    if who.identity:
        display = f" display={_attr(who.display)}" if who.display else ""
        lines.append(f"<identity{display}>{escape(_checked(who.identity))}</identity>")
    if who.target:
        lines.append(f"<target uri={_attr(who.target)}/>")
    lines.append(f"</{tag}>")
    return lines


def _dialog(dialog: Dialog) -> list[str]:
    if not dialog.id:
        raise DialogInfoError("a dialog needs a non-empty id (RFC 4235 section 4.1.1)")
    if dialog.state not in _DIALOG_STATES:
        raise DialogInfoError(f"dialog state {dialog.state!r} is not one of RFC 4235's")
    if dialog.direction is not None and dialog.direction not in _DIRECTIONS:
        raise DialogInfoError(f"direction {dialog.direction!r} is not initiator/recipient")
    attrs = [("id", dialog.id)]
    attrs += [
        (name, value)
        for name, value in (
            ("call-id", dialog.call_id),
            ("local-tag", dialog.local_tag),
            ("remote-tag", dialog.remote_tag),
            ("direction", dialog.direction or ""),
        )
        if value
    ]
    head = "".join(f" {name}={_attr(value)}" for name, value in attrs)
    event = f" event={_attr(dialog.event)}" if dialog.event else ""
    lines = [f"<dialog{head}>", f"<state{event}>{dialog.state}</state>"]
    if dialog.local is not None:
        lines += _participant("local", dialog.local)
    if dialog.remote is not None:
        lines += _participant("remote", dialog.remote)
    lines.append("</dialog>")
    return lines


def check(dialogs: list[Dialog]) -> None:
    """Raise :class:`DialogInfoError` if ``dialogs`` cannot be rendered."""
    ids = [d.id for d in dialogs]
    if len(set(ids)) != len(ids):
        raise DialogInfoError("dialog ids must be unique within a document")
    for dialog in dialogs:
        _dialog(dialog)


@dataclass(frozen=True, slots=True)
class Document:
    """A dialog-info document rendered but for its ``version``.

    Every subscription to an entity gets the same document and only its own ``version``
    (RFC 4235 section 4.1), so a state change is rendered once and each NOTIFY body is
    :meth:`with_version` of it: the two byte strings around the version's digits.
    """

    head: bytes
    """Everything before the digits of the ``version`` attribute."""
    tail: bytes
    """Everything after them."""

    def with_version(self, version: int) -> bytes:
        """The document with ``version`` (a subscription's NOTIFY counter)."""
        if version < 0:
            raise DialogInfoError(f"version must not be negative, got {version}")
        return b"%s%d%s" % (self.head, version, self.tail)


def document(entity_uri: str, state: DocumentState, dialogs: list[Dialog]) -> Document:
    """The dialog-info document for ``entity_uri`` with ``dialogs``, ready for any
    ``version``. With no ``dialogs`` the document shows the idle dialog."""
    if state not in _DOCUMENT_STATES:
        raise DialogInfoError(f"document state {state!r} is not full/partial")
    if not entity_uri:
        raise DialogInfoError("the entity URI must not be empty (RFC 4235 section 4.1)")
    check(dialogs)
    head = f'<?xml version="1.0"?>{_EOL}<dialog-info xmlns={quoteattr(NAMESPACE)} version="'
    lines = [f'" state={quoteattr(state)} entity={_attr(entity_uri)}>']
    for dialog in dialogs or [idle_dialog()]:
        lines += _dialog(dialog)
    lines.append("</dialog-info>")
    return Document(head.encode("utf-8"), (_EOL.join(lines) + _EOL).encode("utf-8"))


def render(entity_uri: str, version: int, state: DocumentState, dialogs: list[Dialog]) -> bytes:
    """The dialog-info document for ``entity_uri``.

    ``version`` is the subscription's NOTIFY counter (RFC 4235 section 4.1: starts at 0,
    one more on every NOTIFY). With no ``dialogs`` the document shows the idle dialog.
    """
    if version < 0:
        raise DialogInfoError(f"version must not be negative, got {version}")
    return document(entity_uri, state, dialogs).with_version(version)


def _child(parent: ET.Element, name: str) -> ET.Element | None:
    return parent.find(_NS + name)


def _parse_participant(element: ET.Element | None) -> Participant | None:
    if element is None:
        return None
    identity = _child(element, "identity")
    target = _child(element, "target")
    return Participant(
        identity=(identity.text or "").strip() if identity is not None else "",
        display=identity.get("display", "") if identity is not None else "",
        target=target.get("uri", "") if target is not None else "",
    )


def _parse_dialog(element: ET.Element) -> Dialog:
    dialog_id = element.get("id")
    if not dialog_id:
        raise DialogInfoError("a <dialog> has no id attribute (RFC 4235 section 4.1.1)")
    state_el = _child(element, "state")
    if state_el is None:
        raise DialogInfoError(f"dialog {dialog_id!r} has no <state> element")
    state = (state_el.text or "").strip()
    if state not in _DIALOG_STATES:
        raise DialogInfoError(f"dialog {dialog_id!r} has unknown state {state!r}")
    direction = element.get("direction")
    if direction is not None and direction not in _DIRECTIONS:
        raise DialogInfoError(f"dialog {dialog_id!r} has unknown direction {direction!r}")
    return Dialog(
        id=dialog_id,
        state=state,  # type: ignore[arg-type]  # checked against _DIALOG_STATES above
        call_id=element.get("call-id", ""),
        local_tag=element.get("local-tag", ""),
        remote_tag=element.get("remote-tag", ""),
        direction=direction,  # type: ignore[arg-type]  # checked against _DIRECTIONS
        event=state_el.get("event", ""),
        local=_parse_participant(_child(element, "local")),
        remote=_parse_participant(_child(element, "remote")),
    )


def parse(body: bytes) -> DialogInfo:
    """Parse a dialog-info document; :class:`DialogInfoError` says what is wrong.

    Documents with a DOCTYPE are refused: dialog-info has none, and refusing it keeps
    entity-expansion tricks out of the XML parser.
    """
    if b"<!DOCTYPE" in body.upper():
        raise DialogInfoError("dialog-info documents must not carry a DOCTYPE")
    try:
        root = ET.fromstring(body)  # noqa: S314  # DOCTYPE (entities) refused above
    except ET.ParseError as exc:
        raise DialogInfoError(f"not well-formed XML: {exc}") from exc
    if root.tag != _NS + "dialog-info":
        raise DialogInfoError(f"root element is {root.tag!r}, not dialog-info in {NAMESPACE}")
    version_text = root.get("version", "")
    if not version_text.isdigit():
        raise DialogInfoError(f"version {version_text!r} is not a non-negative integer")
    state = root.get("state", "")
    if state not in _DOCUMENT_STATES:
        raise DialogInfoError(f"document state {state!r} is not full/partial")
    return DialogInfo(
        # snom's sample omits entity although RFC 4235 section 4.1 requires it.
        entity=root.get("entity", ""),
        version=int(version_text),
        state=state,  # type: ignore[arg-type]  # checked against _DOCUMENT_STATES
        dialogs=tuple(_parse_dialog(d) for d in root.findall(_NS + "dialog")),
    )
