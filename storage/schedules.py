"""Schedules (named cron jobs staff edit) and the record of each run."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from storage.contract import Record, Store


@dataclass(frozen=True, slots=True)
class Schedule:
    id: str
    name: str
    cron: str  # five fields, in the community's timezone
    template: str  # the message, with {time} {place} {agenda} of the next assembly
    audience: str  # "all", "building:<name>", "grid:<id>", "tag:<tag>", "rsvp:coming"
    channel: str  # "template", "mass" or "custom"
    enabled: bool = True
    template_id: str = ""
    # How a run names its period: two runs of one period are one push (claimed once).
    period_format: str = "%Y-%m-%dT%H:%M"
    last_fire: float | None = None  # the cron time last run (or caught up)
    updated_at: float = 0.0
    updated_by: str = ""

    def to_doc(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "cron": self.cron,
            "template": self.template,
            "audience": self.audience,
            "channel": self.channel,
            "enabled": self.enabled,
            "template_id": self.template_id,
            "period_format": self.period_format,
            "last_fire": self.last_fire,
            "updated_at": self.updated_at,
            "updated_by": self.updated_by,
        }


def _schedule(record: Record) -> Schedule:
    d = record.data
    return Schedule(
        record.key,
        d["name"],
        d["cron"],
        d["template"],
        d["audience"],
        d["channel"],
        bool(d.get("enabled", True)),
        d.get("template_id", ""),
        d.get("period_format", "%Y-%m-%dT%H:%M"),
        d.get("last_fire"),
        d.get("updated_at", 0.0),
        d.get("updated_by", ""),
    )


@dataclass(frozen=True, slots=True)
class Run:
    schedule: str
    fire_at: float  # the cron time this run is for (or the moment of a manual run)
    ran_at: float
    trigger: str  # "cron", "catch-up" or "manual"
    campaign: str  # the push's key, ``<campaign>:<period>``
    claimed: bool  # False: that period had been pushed already, nothing was sent
    by: str
    recipients: int


class ScheduleRepo:
    def __init__(self, store: Store) -> None:
        self._items = store.collection("schedules")
        self._runs = store.collection("schedule_runs")

    async def get(self, schedule_id: str) -> Schedule | None:
        record = await self._items.get(schedule_id)
        return _schedule(record) if record else None

    async def all(self) -> list[Schedule]:
        return [_schedule(r) for r in await self._items.scan(limit=1000)]

    async def insert(self, schedule: Schedule) -> None:
        await self._items.insert(schedule.id, schedule.to_doc())

    async def change(
        self, schedule_id: str, change: Callable[[Schedule | None], Schedule]
    ) -> Schedule:
        def apply(current: Record | None) -> dict[str, Any]:
            return change(_schedule(current) if current else None).to_doc()

        return _schedule(await self._items.update(schedule_id, apply))

    async def delete(self, schedule_id: str) -> bool:
        return await self._items.delete(schedule_id)

    async def add_run(self, run: Run) -> None:
        # Two runs may share every time (a frozen clock, two clicks): the suffix keeps both.
        key = (
            f"{run.schedule}:{int(run.fire_at):012d}:{run.trigger}:"
            f"{int(run.ran_at * 1000):015d}:{secrets.token_hex(4)}"
        )
        await self._runs.insert(
            key,
            {
                "schedule": run.schedule,
                "fire_at": run.fire_at,
                "ran_at": run.ran_at,
                "trigger": run.trigger,
                "campaign": run.campaign,
                "claimed": run.claimed,
                "by": run.by,
                "recipients": run.recipients,
            },
        )

    async def runs(self, schedule_id: str, *, limit: int = 50) -> list[Run]:
        found = await self._runs.find("by_schedule", (schedule_id,), limit=10_000)
        runs = [
            Run(
                r.data["schedule"],
                r.data["fire_at"],
                r.data["ran_at"],
                r.data["trigger"],
                r.data["campaign"],
                bool(r.data["claimed"]),
                r.data["by"],
                int(r.data.get("recipients", 0)),
            )
            for r in found
        ]
        return sorted(runs, key=lambda run: -run.ran_at)[:limit]
