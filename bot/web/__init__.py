"""``/admin/``: the staff pages, server-rendered, on the same domain desks as the chat.

No build step and no CDN: Jinja2 templates, one stylesheet and one small script
served from ``/admin/static/``. Every page module has a ``routes`` table; the guard
middleware checks the login, the role and the CSRF token before any handler runs.
"""

from __future__ import annotations

from pathlib import Path

import aiohttp_jinja2
import jinja2
from aiohttp import web

from bot.web import (
    activities,
    assemblies,
    audit,
    auth_pages,
    dashboard,
    points,
    reports,
    schedules,
    users,
)
from bot.web.guard import PREFIX, PUBLIC, allow, guard
from bot.web.render import local

HERE = Path(__file__).parent
PAGE_MODULES = (
    auth_pages,
    dashboard,
    schedules,
    activities,
    reports,
    assemblies,
    points,
    audit,
    users,
)


def setup(app: web.Application) -> None:
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.FileSystemLoader(HERE / "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["when"] = local
    app.middlewares.append(guard)
    for module in PAGE_MODULES:
        app.router.add_routes(module.routes)
    app.router.add_static(f"{PREFIX}/static/", HERE / "static", name="admin-static")
    app.router.add_get(PREFIX, _slash)


@allow(PUBLIC)
async def _slash(request: web.Request) -> web.StreamResponse:
    raise web.HTTPPermanentRedirect(f"{PREFIX}/")
