"""The staff home page (``/admin/``): headline figures and participation per month.

The counting is :mod:`bot.domain.participation`'s; this page draws it as SVG charts
(one per series) and the same numbers as a table. A grid worker has no dashboard:
their home is their grids' reports.
"""

from __future__ import annotations

from aiohttp import web
from markupsafe import Markup

from bot import keys
from bot.domain import participation, timefmt
from bot.domain.accounts import ADMIN, GRID
from bot.web.assemblies import quorum_text
from bot.web.charts import Bar, column_chart
from bot.web.guard import PREFIX, allow
from bot.web.render import current_user, now, redirect, render, tz
from storage.activities import ActivityRepo
from storage.reports import ReportRepo

routes = web.RouteTableDef()

UNITS = {"signups": "人次", "checkins": "人次", "reports": "件", "rsvps": "户次"}


@routes.get(f"{PREFIX}/")
@allow(ADMIN, GRID)
async def home(request: web.Request) -> web.StreamResponse:
    if current_user(request).role == GRID:
        return redirect(f"{PREFIX}/reports")
    services = request.app[keys.SERVICES]
    store = request.app[keys.STORE]
    zone = tz(request)
    counted = await participation.monthly(
        activities=ActivityRepo(store),
        reports=ReportRepo(store),
        assembly=services.assembly,
        now=now(request),
        tz=zone,
    )
    upcoming = await services.assembly.next_assembly()
    context = {
        "counted": counted,
        "series": participation.SERIES,
        "units": UNITS,
        "charts": [
            (name, UNITS[key], _chart(counted, key, name)) for key, name in participation.SERIES
        ],
        "upcoming": upcoming,
        "upcoming_span": (
            timefmt.span(upcoming.starts_at, upcoming.ends_at, zone) if upcoming else ""
        ),
        "upcoming_quorum": (
            quorum_text(await services.assembly.counts(upcoming)) if upcoming else ""
        ),
        "next_push": await participation.next_push(request.app[keys.SCHEDULES]),
    }
    return await render(request, "dashboard.html", context, section="/admin/")


def _chart(counted: participation.Participation, key: str, name: str) -> Markup:
    bars = []
    months = [m.month for m in counted.months]
    for i, month in enumerate(counted.months):
        m = month.month
        # The year under each January, and under the first month unless a January is
        # right next to it (two years side by side would overlap).
        opening = i == 0 and not (len(months) > 1 and months[1].month == 1)
        note = f"{m.year}年" if opening or m.month == 1 else ""
        bars.append(Bar(f"{m.month}月", month.get(key), note=note))
    first, last = counted.months[0].month.label, counted.months[-1].month.label
    return column_chart(
        bars,
        label=f"{name}（{UNITS[key]}），{first}至{last}每月，共 {sum(b.value for b in bars)}",
        unit=UNITS[key],
    )
