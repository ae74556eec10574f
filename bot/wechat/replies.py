"""What handlers return, and the passive-reply XML it becomes.

Rendering is plain string building: a reply is rendered on every webhook hit, and
every string a user could influence goes through :func:`cdata`, which keeps it inside
its element whatever it contains.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import assert_never

MAX_TEXT_BYTES = 2048
TRUNCATION_HINT = "…（内容过长，回复“帮助”查看菜单）"


@dataclass(frozen=True, slots=True)
class TextReply:
    content: str


@dataclass(frozen=True, slots=True)
class Article:
    title: str
    description: str = ""
    url: str = ""
    pic_url: str = ""


@dataclass(frozen=True, slots=True)
class ArticlesReply:
    article: Article  # WeChat allows one article in a passive reply since 2018


@dataclass(frozen=True, slots=True)
class ImageReply:
    media_id: str


Reply = TextReply | ArticlesReply | ImageReply

# Characters XML 1.0 forbids even inside CDATA, plus lone surrogates (which cannot be
# encoded to UTF-8 at all). One of them in a reply makes WeChat drop it and show the
# user "该公众号暂时无法提供服务".
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")

_ZWJ = "\u200d"
_COMBINING_KEYCAP = "\u20e3"


def cdata(s: str) -> str:
    """``s`` as one CDATA section that no content can close early."""
    if _NOT_XML.search(s) is not None:
        s = _NOT_XML.sub("", s)
    # "]]>" would end the section; splitting it across two sections keeps the text.
    return "<![CDATA[" + s.replace("]]>", "]]]]><![CDATA[>") + "]]>"


def _extends_previous(ch: str) -> bool:
    """Whether ``ch`` belongs to the character before it on screen (emoji modifiers etc.)."""
    cp = ord(ch)
    return (
        ch == _ZWJ
        or 0xFE00 <= cp <= 0xFE0F  # variation selectors (❤️ is U+2764 U+FE0F)
        or 0x1F3FB <= cp <= 0x1F3FF  # skin tones
        or ch == _COMBINING_KEYCAP
        or 0xE0020 <= cp <= 0xE007F  # tag sequences (subdivision flags)
        or 0x0300 <= cp <= 0x036F  # combining diacritics
    )


def _is_regional_indicator(ch: str) -> bool:
    return 0x1F1E6 <= ord(ch) <= 0x1F1FF


def _grapheme_boundary(text: str, end: int) -> int:
    """The largest ``i <= end`` where cutting ``text[:i]`` splits no emoji sequence."""
    while 0 < end < len(text) and (_extends_previous(text[end]) or text[end - 1] == _ZWJ):
        end -= 1
    # Flags are pairs of regional indicators: an odd run before the cut ends in half a flag.
    run = 0
    while run < end and _is_regional_indicator(text[end - 1 - run]):
        run += 1
    if run % 2 and end < len(text) and _is_regional_indicator(text[end]):
        end -= 1
    return end


def fit_text(content: str, max_bytes: int = MAX_TEXT_BYTES) -> str:
    """``content`` if it fits in ``max_bytes`` UTF-8 bytes, else a cut copy ending in the hint.

    WeChat silently fails on a passive text reply longer than 2048 bytes, so the user
    would see an error instead of the start of the answer.
    """
    # A character is at most 4 bytes in UTF-8: most replies skip the encoding entirely.
    if len(content) * 4 <= max_bytes:
        return content
    encoded = content.encode("utf-8", "surrogatepass")
    if len(encoded) <= max_bytes:
        return content
    hint = TRUNCATION_HINT
    budget = max_bytes - len(hint.encode("utf-8"))
    if budget < 0:
        hint, budget = "", max_bytes
    # Step back over UTF-8 continuation bytes (10xxxxxx) to a character start.
    cut = budget
    while cut > 0 and encoded[cut] & 0xC0 == 0x80:
        cut -= 1
    kept = encoded[:cut].decode("utf-8", "surrogatepass")
    kept = kept[: _grapheme_boundary(content, len(kept))]
    return kept.rstrip() + hint


def _header(to_user: str, from_user: str, create_time: int, msg_type: str) -> str:
    return (
        f"<xml><ToUserName>{cdata(to_user)}</ToUserName>"
        f"<FromUserName>{cdata(from_user)}</FromUserName>"
        f"<CreateTime>{int(create_time)}</CreateTime>"
        f"<MsgType><![CDATA[{msg_type}]]></MsgType>"
    )


def render(reply: Reply, *, to_user: str, from_user: str, create_time: int) -> str:
    """The passive-reply XML for ``reply`` (``to_user`` is the resident's OpenID)."""
    match reply:
        case TextReply(content=content):
            return (
                _header(to_user, from_user, create_time, "text")
                + f"<Content>{cdata(fit_text(content))}</Content></xml>"
            )
        case ArticlesReply(article=article):
            return (
                _header(to_user, from_user, create_time, "news")
                + "<ArticleCount>1</ArticleCount><Articles><item>"
                f"<Title>{cdata(article.title)}</Title>"
                f"<Description>{cdata(article.description)}</Description>"
                f"<PicUrl>{cdata(article.pic_url)}</PicUrl>"
                f"<Url>{cdata(article.url)}</Url>"
                "</item></Articles></xml>"
            )
        case ImageReply(media_id=media_id):
            return (
                _header(to_user, from_user, create_time, "image")
                + f"<Image><MediaId>{cdata(media_id)}</MediaId></Image></xml>"
            )
        case _:
            assert_never(reply)
