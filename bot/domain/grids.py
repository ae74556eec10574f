"""Grids (网格): their polygons, workers and leader, and routing a point to one of them.

Grids change rarely and are read on every report, so each process keeps them in
memory with a spatial index, reloaded at most every ``ttl`` seconds (and at once
after a change made in this process).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

from bot.domain.errors import Invalid, NotFound, Refused
from bot.domain.geo import Area, GridIndex, parse_area
from bot.wechat.wecom import check_webhook_url
from storage.reports import Grid, GridRepo
from storage.repos import AuditRepo

log = logging.getLogger("bot.domain.grids")

GRID_ID = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
MAX_WORKERS = 50


class GridDirectory:
    def __init__(
        self,
        grids: GridRepo,
        audit: AuditRepo,
        clock: Callable[[], float],
        *,
        ttl: float = 30.0,
    ) -> None:
        self._grids = grids
        self._audit = audit
        self._clock = clock
        self._ttl = ttl
        self._by_id: dict[str, Grid] = {}
        self._index: GridIndex[str] = GridIndex([])
        self._loaded_at = -float("inf")
        self._lock = asyncio.Lock()

    async def _fresh(self) -> None:
        if time.monotonic() - self._loaded_at < self._ttl:
            return
        async with self._lock:
            if time.monotonic() - self._loaded_at < self._ttl:
                return
            grids = await self._grids.all()
            areas: list[tuple[str, Area]] = []
            for grid in grids:
                try:
                    areas.append((grid.id, parse_area(grid.area)))
                except Invalid as exc:
                    log.error("grid %s has an unusable polygon, skipped: %s", grid.id, exc)
            self._by_id = {g.id: g for g in grids}
            self._index = GridIndex(areas)
            self._loaded_at = time.monotonic()

    async def all(self) -> list[Grid]:
        await self._fresh()
        return sorted(self._by_id.values(), key=lambda g: g.id)

    async def get(self, grid_id: str) -> Grid | None:
        await self._fresh()
        return self._by_id.get(grid_id)

    async def find(self, ref: str) -> Grid | None:
        """A grid by id or by name (what a worker types in ``转派 N 网格``)."""
        await self._fresh()
        ref = ref.strip()
        if ref in self._by_id:
            return self._by_id[ref]
        return next((g for g in self._by_id.values() if g.name == ref), None)

    async def locate(self, lat: float | None, lng: float | None) -> Grid | None:
        if lat is None or lng is None:
            return None
        await self._fresh()
        found = self._index.locate(lat, lng)
        return self._by_id.get(found) if found is not None else None

    async def of_worker(self, openid: str) -> list[Grid]:
        await self._fresh()
        return [g for g in self._by_id.values() if openid in g.workers or openid == g.leader]

    async def works_in(self, openid: str) -> bool:
        return bool(await self.of_worker(openid))

    async def put(self, grid_id: str, body: Mapping[str, Any], *, actor: str) -> Grid:
        """Create or replace a grid from the admin API (validated, audited)."""
        if not GRID_ID.match(grid_id):
            raise Invalid("网格编号只能是1到32个字母、数字、-、_")
        name = body.get("name")
        if not isinstance(name, str) or not name.strip() or len(name.strip()) > 30:
            raise Invalid("name 必须是1到30个字")
        area = parse_area(body.get("area"))
        workers = body.get("workers", [])
        if not isinstance(workers, list) or not all(isinstance(w, str) and w for w in workers):
            raise Invalid("workers 必须是 openid 列表")
        if len(workers) > MAX_WORKERS:
            raise Invalid(f"一个网格最多{MAX_WORKERS}名网格员")
        leader = body.get("leader", "")
        if not isinstance(leader, str):
            raise Invalid("leader 必须是 openid")
        wecom_url = body.get("wecom_url", "")
        if not isinstance(wecom_url, str):
            raise Invalid("wecom_url 必须是企业微信群机器人的地址")
        if wecom_url:
            try:
                check_webhook_url(wecom_url)
            except ValueError:
                raise Invalid(
                    "wecom_url 必须是企业微信群机器人的 http(s) 地址（含 key=…）"
                ) from None
        others = [g for g in await self.all() if g.name == name.strip() and g.id != grid_id]
        if others:
            raise Invalid(f"已有名为“{name.strip()}”的网格（{others[0].id}）")
        grid = Grid(
            grid_id,
            name.strip(),
            area.to_geojson(),
            tuple(dict.fromkeys(workers)),
            leader,
            wecom_url,
            self._clock(),
        )
        await self._grids.put(grid)
        self._loaded_at = -float("inf")
        detail = {"name": grid.name, "workers": len(grid.workers), "leader": bool(leader)}
        await self._audit.add(actor, "grid.put", f"grid/{grid_id}", detail, self._clock())
        return grid

    async def delete(self, grid_id: str, *, actor: str, open_reports: int = 0) -> None:
        """Remove a grid; refused while ``open_reports`` of it are open (they would be stranded)."""
        if open_reports:
            raise Refused(f"网格 {grid_id[:32]} 还有{open_reports}件未办结的报事，请先转派再删除")
        if not await self._grids.delete(grid_id):
            raise NotFound(f"没有编号为 {grid_id[:32]} 的网格")
        self._loaded_at = -float("inf")
        await self._audit.add(actor, "grid.delete", f"grid/{grid_id}", {}, self._clock())
