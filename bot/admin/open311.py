"""Open311 GeoReport v2, read-only: ``/open311/v2/services.json`` and ``requests.json``.

City systems and existing Open311 tools read the community's reports (报事) here.
It is public (no token) because it is read-only and carries no personal data: no
reporter, follower, worker or assignee identity, only what was reported, where,
when, and the staff's latest note. Free text is still written by people, so
openid-shaped words, mobile and ID-card numbers in it are blanked out.

Only JSON is served (GeoReport also defines XML); errors are GeoReport's JSON error
list, ``[{"code": 400, "description": "..."}]``.

Local states map to Open311's two: reported and accepted are ``open``; resolved
and rejected are ``closed``. A service is one configured category; its
``service_code`` is derived from the category's name, so it stays the same however
the configured list is reordered or extended.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web

from bot import keys
from bot.domain import report_stats, timefmt
from bot.domain.errors import Invalid, NotFound
from bot.domain.reports import ReportDesk
from storage.reports import ACCEPTED, REJECTED, REPORTED, RESOLVED, Report, ReportRepo

log = logging.getLogger("bot.admin.open311")

PREFIX = "/open311/v2"
GROUP = "社区报事"
MAX_RESULTS = 1000
WINDOW_DAYS = 90
WINDOW = WINDOW_DAYS * 86400.0
OPEN, CLOSED = "open", "closed"
STATUS = {REPORTED: OPEN, ACCEPTED: OPEN, RESOLVED: CLOSED, REJECTED: CLOSED}
MAX_IDS = 100
ONLY_JSON = "only JSON is served: use .json (仅提供 JSON 格式)"
_FORMAT = "{format:[A-Za-z0-9]+}"
# What must not reach the public even inside free text.
_SCRUB = (
    (re.compile(r"(?<![A-Za-z0-9_-])o[A-Za-z0-9_-]{27}(?![A-Za-z0-9_-])"), "[已隐去]"),
    (re.compile(r"(?<!\d)\d{17}[\dXx](?!\w)"), "[证件号已隐去]"),
    (re.compile(r"(?<!\d)(?:\+?86[ -]?)?1[3-9]\d[ -]?\d{4}[ -]?\d{4}(?!\d)"), "[电话已隐去]"),
)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def service_code(category: str) -> str:
    """A stable code for a category: the same for the same name, whatever its position."""
    return "cat-" + hashlib.blake2s(category.encode("utf-8"), digest_size=4).hexdigest()


def scrub(text: str) -> str:
    for pattern, replacement in _SCRUB:
        text = pattern.sub(replacement, text)
    return text


def _error(status: int, description: str) -> web.Response:
    return web.json_response([{"code": status, "description": description}], status=status)


@web.middleware
async def georeport_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """GeoReport's JSON errors under ``/open311/``; the other paths pass untouched."""
    if not request.path.startswith("/open311/"):
        return await handler(request)
    try:
        response = await handler(request)
    except Invalid as exc:
        response = _error(400, str(exc))
    except NotFound as exc:
        response = _error(404, str(exc))
    except web.HTTPMethodNotAllowed:
        response = _error(405, "read-only: only GET is served")
    except web.HTTPNotFound:
        response = _error(404, "no such Open311 resource (see /open311/v2/services.json)")
    # Public and read-only: map tools in a browser may read it from another origin.
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response


def _desk(request: web.Request) -> ReportDesk:
    return request.app[keys.SERVICES].reports


def _json_only(request: web.Request) -> None:
    if request.match_info["format"].lower() != "json":
        raise Invalid(ONLY_JSON)


def _iso(at: float, tz: ZoneInfo) -> str:
    return timefmt.local(at, tz).isoformat(timespec="seconds")


def _request(r: Report, tz: ZoneInfo, grids: dict[str, str]) -> dict[str, Any]:
    """One report as a GeoReport service request: nobody's identity in it."""
    return {
        "service_request_id": str(r.number),
        "status": STATUS.get(r.state, OPEN),
        "status_notes": scrub(report_stats.latest_staff_note(r)),
        "service_name": r.category,
        "service_code": service_code(r.category),
        "description": scrub(r.text) if r.text else "（语音描述）",
        "agency_responsible": grids.get(r.grid, "社区") if r.grid else "社区",
        "requested_datetime": _iso(r.created_at, tz),
        "updated_datetime": _iso(report_stats.updated_at(r), tz),
        "address": scrub(r.label),
        "lat": r.lat,
        "long": r.lng,
        # No media_url: our copies of the photos are on the server's disk, not published,
        # and WeChat's PicUrl expires three days after the photo was sent.
    }


async def _grid_names(desk: ReportDesk) -> dict[str, str]:
    return {g.id: g.name for g in await desk.grids.all()}


def _respond(items: list[Any]) -> web.Response:
    return web.json_response(items, headers={"Cache-Control": "public, max-age=30"})


# --- handlers -------------------------------------------------------------------------


async def services(request: web.Request) -> web.Response:
    _json_only(request)
    categories = _desk(request).config.categories
    return _respond(
        [
            {
                "service_code": service_code(name),
                "service_name": name,
                "description": name,
                "metadata": False,
                "type": "realtime",
                "keywords": "",
                "group": GROUP,
            }
            for name in categories
        ]
    )


def _list(raw: str) -> list[str]:
    return [part.strip() for part in raw.split(",") if part.strip()]


def _window(request: web.Request, tz: ZoneInfo, now: float) -> tuple[float, float]:
    """start_date and end_date (both inclusive; at most 90 days apart, the last 90 by default)."""
    q = request.query
    start = (
        report_stats.parse_bound(q["start_date"], tz, "start_date", end=False)
        if q.get("start_date", "").strip()
        else None
    )
    end = (
        report_stats.parse_bound(q["end_date"], tz, "end_date", end=True)
        if q.get("end_date", "").strip()
        else None
    )
    if start is None:
        end = now if end is None else end
        start = end - WINDOW
    elif end is None:
        end = start + WINDOW
    if start > end:
        raise Invalid("start_date must not be after end_date (start_date 不能晚于 end_date)")
    if end - start > WINDOW:
        raise Invalid(
            f"start_date and end_date may not span more than {WINDOW_DAYS} days"
            f"（时间范围最多{WINDOW_DAYS}天）"
        )
    return start, end


async def _by_ids(request: web.Request, raw: str) -> list[Report]:
    ids = _list(raw)
    if len(ids) > MAX_IDS:
        raise Invalid(f"at most {MAX_IDS} service_request_id at once")
    numbers: list[int] = []
    for part in ids:
        if not (part.isascii() and part.isdigit()) or len(part) > 9:
            raise Invalid(f"service_request_id must be numbers: {part[:20]}")
        numbers.append(int(part))
    repo = ReportRepo(request.app[keys.STORE])
    found = [r for n in dict.fromkeys(numbers) if (r := await repo.get(n)) is not None]
    return sorted(found, key=lambda r: (r.created_at, r.number), reverse=True)


async def list_requests(request: web.Request) -> web.Response:
    _json_only(request)
    desk = _desk(request)
    q = request.query
    if q.get("service_request_id", "").strip():
        # As GeoReport says, a list of ids overrides every other parameter.
        found = await _by_ids(request, q["service_request_id"])
    else:
        statuses = set(_list(q.get("status", "")))
        if statuses - {OPEN, CLOSED}:
            raise Invalid("status must be open or closed (comma separated)")
        codes = set(_list(q.get("service_code", "")))
        start, end = _window(request, desk.tz, request.app[keys.SERVICES].clock())
        window = report_stats.ReportFilter(
            states=frozenset(s for s, status in STATUS.items() if status in statuses),
            since=start,
            until=end,
        )

        def keep(r: Report) -> bool:
            return window.matches(r) and (not codes or service_code(r.category) in codes)

        found = await report_stats.newest(ReportRepo(request.app[keys.STORE]), keep, MAX_RESULTS)
    grids = await _grid_names(desk)
    return _respond([_request(r, desk.tz, grids) for r in found])


async def one_request(request: web.Request) -> web.Response:
    _json_only(request)
    desk = _desk(request)
    raw = request.match_info["id"]
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 9:
        raise NotFound(f"no service request {raw[:20]}")
    found = await ReportRepo(request.app[keys.STORE]).get(int(raw))
    if found is None:
        raise NotFound(f"no service request {raw}")
    # GeoReport answers a single request as a one-element list too.
    return _respond([_request(found, desk.tz, await _grid_names(desk))])


def setup(app: web.Application) -> None:
    app.middlewares.append(georeport_errors)
    app.router.add_get(f"{PREFIX}/services.{_FORMAT}", services)
    app.router.add_get(f"{PREFIX}/requests.{_FORMAT}", list_requests)
    app.router.add_get(f"{PREFIX}/requests/{{id:[^/.]+}}.{_FORMAT}", one_request)
