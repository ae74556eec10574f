"""Reading the audit log for staff: who changed what and when, filtered, newest first.

The log is stored in time order (:class:`~storage.repos.AuditRepo` keys begin with the
time of the change) and read oldest first, a page at a time. A page of the newest
entries that match is found by walking the log from its start up to the page's cursor
(or the end of the date window) and keeping the last ``limit`` matches.

**Cost.** No index serves these filters, so each page walks the log up to its cursor:
a full scan, fine at a community's scale (tens of thousands of entries) for a page staff
open now and then; memory holds one page of matches, not the log.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from bot.domain.errors import Invalid
from bot.domain.report_stats import parse_bound
from storage.repos import AuditEntry, AuditRepo

SCAN_CHUNK = 1000
PAGE = 50
MAX_TERM = 100


@dataclass(frozen=True, slots=True)
class AuditFilter:
    """Which entries to show; every field left empty takes all."""

    actor: str = ""  # part of who made it, any case: "wangfang" finds "web:wangfang"
    action: str = ""  # the start of the action: "report." finds every change to reports
    target: str = ""  # the exact target ("meeting/3"), or every target under it ("meeting/")
    since: float | None = None
    until: float | None = None

    def matches(self, entry: AuditEntry) -> bool:
        return (
            (not self.actor or self.actor.casefold() in entry.actor.casefold())
            and entry.action.startswith(self.action)
            and self._target_matches(entry.target)
            and (self.since is None or entry.at >= self.since)
            and (self.until is None or entry.at <= self.until)
        )

    def _target_matches(self, target: str) -> bool:
        if not self.target:
            return True
        if self.target.endswith("/"):
            return target.startswith(self.target)
        return target == self.target


@dataclass(frozen=True, slots=True)
class AuditPage:
    entries: list[AuditEntry]  # newest first
    older: str | None  # the cursor (``before``) of the next, older page; None at the start


def filter_from(query: Mapping[str, str], tz: ZoneInfo) -> AuditFilter:
    """The filter from a page's query: actor, action, target, since and until (dates)."""

    def term(name: str) -> str:
        return query.get(name, "").strip()[:MAX_TERM]

    since_text, until_text = term("since"), term("until")
    since = parse_bound(since_text, tz, "起始日期", end=False) if since_text else None
    until = parse_bound(until_text, tz, "截止日期", end=True) if until_text else None
    if since is not None and until is not None and since > until:
        raise Invalid("起始日期不能晚于截止日期")
    return AuditFilter(term("actor"), term("action"), term("target"), since, until)


async def newest(
    log: AuditRepo, keep: AuditFilter, *, before: str | None = None, limit: int = PAGE
) -> AuditPage:
    """The ``limit`` newest entries ``keep`` takes that are older than the entry ``before``."""
    found: deque[AuditEntry] = deque(maxlen=limit + 1)  # one more: is there an older page?
    after: str | None = None
    while True:
        chunk = await log.page(after=after, limit=SCAN_CHUNK)
        for entry in chunk:
            # Time order: past the cursor or the window's end, nothing later can match.
            if (before is not None and entry.id >= before) or (
                keep.until is not None and entry.at > keep.until
            ):
                return _page(found, limit)
            if keep.matches(entry):
                found.append(entry)
        if len(chunk) < SCAN_CHUNK:
            return _page(found, limit)
        after = chunk[-1].id


def _page(found: deque[AuditEntry], limit: int) -> AuditPage:
    entries = list(found)
    older = None
    if len(entries) > limit:
        entries = entries[1:]
        older = entries[0].id
    return AuditPage(entries[::-1], older)
