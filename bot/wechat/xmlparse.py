"""Strict parsing of WeChat push XML into :class:`~bot.wechat.messages.Message`.

Built on ``xml.parsers.expat`` directly: no DTD is ever accepted (so no entity
expansion and no external entities), a top-level field may appear only once (so a
``]]>`` smuggled into user text cannot add a second ``MsgType``), nesting is bounded,
and any failure is a :class:`~bot.errors.MalformedMessage`.
"""

from __future__ import annotations

from types import MappingProxyType
from typing import Any, NoReturn
from xml.parsers import expat

from bot.errors import MalformedMessage
from bot.wechat.messages import Message

# The deepest legitimate push (MASSSENDJOBFINISH: xml/CopyrightCheckResult/ResultList/
# item/field) is 5 levels; 8 leaves room without letting a body nest without end.
MAX_DEPTH = 8
_MAX_NUMBER_DIGITS = 20  # MsgId is a 64-bit integer

# Elements WeChat repeats (PicList/item, ResultList/item, SubscribeMsg*Event/List).
# They always come back as lists, so handlers need not care whether one or several
# were sent.
_LIST_ELEMENTS = frozenset({"item", "List"})

_REQUIRED = ("ToUserName", "FromUserName", "CreateTime", "MsgType")
_ENVELOPE_REQUIRED = ("ToUserName", "Encrypt")


def _forbid_dtd(*_: object) -> NoReturn:
    raise MalformedMessage("forbidden_dtd", "DOCTYPE and entity declarations are refused")


def _parse_tree(body: bytes) -> dict[str, Any]:
    """The ``<xml>`` root as a dict: text leaves are str, elements with children dicts."""
    root: dict[str, Any] = {}
    # Every text piece of the document, appended by expat itself (a C bound method,
    # so no Python frame per piece); an open element remembers where its text starts.
    texts: list[str] = []
    # Per open element: its children dict, or None while it has held only text.
    open_children: list[dict[str, Any] | None] = []
    text_starts: list[int] = []

    def start(name: str, _attrs: object) -> None:
        depth = len(open_children)
        if depth == 0:
            if name != "xml":
                raise MalformedMessage("bad_xml", f"root element must be <xml>, not <{name}>")
            open_children.append(root)
        else:
            if depth >= MAX_DEPTH:
                raise MalformedMessage("too_deep", f"elements nested deeper than {MAX_DEPTH}")
            if open_children[-1] is None:
                open_children[-1] = {}
            open_children.append(None)
        text_starts.append(len(texts))

    def end(name: str) -> None:
        children = open_children.pop()
        first = text_starts.pop()
        if not open_children:
            return
        value: Any = children
        if children is None:
            value = texts[first] if len(texts) == first + 1 else "".join(texts[first:])
        parent = open_children[-1]
        assert parent is not None  # start() made it a dict when this element opened
        if parent is root:
            if name in root:
                raise MalformedMessage("duplicate_field", f"<{name}> appears twice")
            root[name] = value
        elif name in _LIST_ELEMENTS:
            parent.setdefault(name, []).append(value)
        elif name in parent:
            previous = parent[name]
            if isinstance(previous, list):
                previous.append(value)
            else:
                parent[name] = [previous, value]
        else:
            parent[name] = value

    # The encoding is fixed to UTF-8 (what WeChat sends) whatever the body declares.
    parser = expat.ParserCreate("utf-8")
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = texts.append
    # A DOCTYPE is where entity tricks (XXE, billion laughs) start: stop at its first
    # token, before expat reads any declaration in it.
    parser.StartDoctypeDeclHandler = _forbid_dtd
    parser.EntityDeclHandler = _forbid_dtd
    parser.ExternalEntityRefHandler = _forbid_dtd
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    try:
        parser.Parse(body, True)
    except expat.ExpatError as exc:
        raise MalformedMessage("bad_xml", str(exc)) from exc
    return root


def _require_text(tree: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        value = tree.get(name)
        if not isinstance(value, str) or not value:
            raise MalformedMessage("missing_field", f"<{name}> is missing or empty")


def _to_int(name: str, value: str) -> int:
    digits = value.strip()
    if not (digits.isascii() and digits.isdigit()) or len(digits) > _MAX_NUMBER_DIGITS:
        raise MalformedMessage("bad_number", f"<{name}> is not a number: {value[:32]!r}")
    return int(digits)


def parse_envelope(body: bytes) -> dict[str, str]:
    """The top-level text fields of a safe/compatible-mode body (``Encrypt``, ``ToUserName``...).

    Compatible mode also carries the plaintext message, possibly with nested
    elements; those are left out, only the encrypted copy is trusted.
    """
    tree = _parse_tree(body)
    _require_text(tree, _ENVELOPE_REQUIRED)
    return {name: value for name, value in tree.items() if isinstance(value, str)}


def parse_message(xml: bytes) -> Message:
    """The :class:`Message` in a plaintext push (or a decrypted safe-mode one)."""
    tree = _parse_tree(xml)
    _require_text(tree, _REQUIRED)
    msg_type: str = tree["MsgType"].lower()
    event: str | None = None
    event_key: str | None = None
    msg_id: int | None = None
    if msg_type == "event":
        raw_event = tree.get("Event")
        event = raw_event.lower() if isinstance(raw_event, str) and raw_event else None
        raw_key = tree.get("EventKey")
        event_key = raw_key if isinstance(raw_key, str) and raw_key else None
    else:
        raw_id = tree.get("MsgId")
        if raw_id is not None:
            if not isinstance(raw_id, str):
                raise MalformedMessage("bad_number", "<MsgId> is not a number")
            msg_id = _to_int("MsgId", raw_id)
    return Message(
        msg_type=msg_type,
        source=tree["FromUserName"],
        target=tree["ToUserName"],
        create_time=_to_int("CreateTime", tree["CreateTime"]),
        msg_id=msg_id,
        event=event,
        event_key=event_key,
        fields=MappingProxyType(tree),
    )
