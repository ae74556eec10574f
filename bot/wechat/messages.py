"""The typed inbound message every handler receives.

One frozen class covers every message and event type WeChat pushes: the fields
all of them share are attributes, the type-specific ones live in ``fields`` and
are reached through the typed properties below. Handlers never see XML.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# Message types WeChat documents for Official Accounts (MsgType values).
MESSAGE_TYPES = frozenset(
    {"text", "image", "voice", "video", "shortvideo", "location", "link", "miniprogrampage"}
)


@dataclass(frozen=True, slots=True)
class Location:
    latitude: float
    longitude: float
    scale: int | None = None
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Message:
    """An inbound push, already verified, decrypted and parsed.

    ``msg_type`` is the lower-cased ``MsgType`` (``"text"``, ``"event"``, or an
    unknown value kept as sent). For events, ``event`` is the lower-cased
    ``Event`` (``"subscribe"``, ``"scan"``, ``"templatesendjobfinish"``...).
    ``fields`` holds every top-level element as parsed: strings, or nested
    mappings/lists for the structured events (``ScanCodeInfo``, ``SendPicsInfo``,
    ``SendLocationInfo``, ``SubscribeMsgPopupEvent``...).
    """

    msg_type: str
    source: str
    target: str
    create_time: int
    msg_id: int | None = None
    event: str | None = None
    event_key: str | None = None
    fields: Mapping[str, Any] = field(default_factory=dict)

    # -- common accessors -------------------------------------------------
    @property
    def is_event(self) -> bool:
        return self.msg_type == "event"

    @property
    def known_type(self) -> bool:
        return self.is_event or self.msg_type in MESSAGE_TYPES

    def get(self, name: str) -> str | None:
        value = self.fields.get(name)
        return value if isinstance(value, str) else None

    @property
    def content(self) -> str | None:
        """Text content for ``text`` messages."""
        return self.get("Content") if self.msg_type == "text" else None

    @property
    def recognition(self) -> str | None:
        """WeChat's speech recognition result for ``voice`` messages, if enabled."""
        if self.msg_type != "voice":
            return None
        value = self.get("Recognition")
        return value if value else None

    @property
    def text(self) -> str | None:
        """What the resident said: typed text, or recognised speech (many are elderly)."""
        raw = self.content if self.msg_type == "text" else self.recognition
        if raw is None:
            return None
        # WeChat's recognition ends sentences with full stops; keywords must still match.
        return raw.strip().rstrip("。.！!？?").strip()

    @property
    def media_id(self) -> str | None:
        return self.get("MediaId")

    @property
    def pic_url(self) -> str | None:
        return self.get("PicUrl")

    @property
    def location(self) -> Location | None:
        """The point of a ``location`` message or a ``LOCATION`` event."""
        if self.msg_type == "location":
            lat, lng = self.get("Location_X"), self.get("Location_Y")
            scale, label = self.get("Scale"), self.get("Label")
        elif self.event == "location":
            lat, lng = self.get("Latitude"), self.get("Longitude")
            scale, label = None, None
        else:
            return None
        if lat is None or lng is None:
            return None
        return Location(
            latitude=float(lat),
            longitude=float(lng),
            scale=int(scale) if scale else None,
            label=label or None,
        )

    @property
    def scene(self) -> str | None:
        """The parametric QR code scene of a ``SCAN`` or ``subscribe`` event."""
        key = self.event_key
        if not key:
            return None
        if self.event == "subscribe":
            return key[len("qrscene_") :] if key.startswith("qrscene_") else None
        if self.event == "scan":
            return key
        return None

    @property
    def dedup_key(self) -> str:
        """What identifies a delivery and its retries.

        Messages carry a ``MsgId``; events are keyed on sender, time, event and key,
        because two events of one user can share a second (WxJava#333 and the
        weixin-java-tools#66 notes in the protocol reference).
        """
        if self.msg_id is not None:
            # The same MsgId was seen for different users (WxJava#333): add the sender.
            return f"m:{self.source}:{self.msg_id}"
        return f"e:{self.source}:{self.create_time}:{self.event or self.msg_type}:{self.event_key or ''}"
