"""The staff home page (``/admin/``): participation per month (to be written)."""

from __future__ import annotations

from aiohttp import web

from bot.domain.accounts import ADMIN, GRID
from bot.web.guard import PREFIX, allow
from bot.web.render import current_user, redirect, render

routes = web.RouteTableDef()


@routes.get(f"{PREFIX}/")
@allow(ADMIN, GRID)
async def home(request: web.Request) -> web.StreamResponse:
    if current_user(request).role == GRID:
        return redirect(f"{PREFIX}/reports")
    return await render(request, "dashboard.html", {}, section="/admin/")
