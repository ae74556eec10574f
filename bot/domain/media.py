"""Keeping report photos: WeChat's copies expire after 3 days, so each is fetched into our folder.

The photo's ``MediaId`` and ``PicUrl`` are stored with the report at once; the
file is fetched through the media API in the background and its path recorded.
A fetch that fails is logged and tried again by the scheduler while WeChat
still has the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from bot.errors import BotError
from bot.wechat.client import WeChatClient
from storage.reports import OPEN_STATES, Photo, Report, ReportRepo, Unchanged

log = logging.getLogger("bot.domain.media")

WECHAT_KEEPS_MEDIA = 3 * 86400


class PhotoKeeper:
    def __init__(
        self, wechat: WeChatClient, reports: ReportRepo, folder: Path, clock: Callable[[], float]
    ) -> None:
        self._wechat = wechat
        self._reports = reports
        self._folder = folder
        self._clock = clock

    def path_for(self, number: int, photo: Photo) -> Path:
        digest = hashlib.sha256(photo.media_id.encode()).hexdigest()[:16]
        return self._folder / "reports" / f"{number:010d}-{digest}.jpg"

    async def fetch(self, number: int, photo: Photo) -> bool:
        """Fetch one photo and record where it is; False (logged) if it failed."""
        target = self.path_for(number, photo)
        try:
            data = await self._wechat.get_media(photo.media_id)
        except BotError as exc:
            log.warning("photo of report %s not fetched yet: %s", number, exc)
            return False
        await asyncio.to_thread(_write, target, data)

        def record(current: Report) -> Report:
            photos = tuple(
                replace(p, path=str(target)) if p.media_id == photo.media_id and not p.path else p
                for p in current.photos
            )
            if photos == current.photos:
                raise Unchanged
            return replace(current, photos=photos)

        with contextlib.suppress(Unchanged):
            await self._reports.change(number, record)
        log.info("photo of report %s kept (%s bytes)", number, len(data))
        return True

    async def fetch_missing(self) -> int:
        """Fetch the photos of open reports WeChat may still hold; returns how many were kept."""
        now = self._clock()
        kept = 0
        for state in OPEN_STATES:
            for report in await self._reports.by_state(state):
                if now - report.created_at > WECHAT_KEEPS_MEDIA:
                    continue
                for photo in report.photos:
                    if not photo.path:
                        kept += await self.fetch(report.number, photo)
        return kept


def _write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_suffix(".tmp")
    with open(temp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(temp, path)
