"""What handlers may use: repositories, the clock and settings, passed in by the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Config
from storage.repos import FeedbackRepo, ResidentRepo


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    clock: Callable[[], float]
    residents: ResidentRepo
    feedback: FeedbackRepo
