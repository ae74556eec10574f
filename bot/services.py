"""What handlers may use: repositories, domain desks, the clock and settings, passed in by the app."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bot.config import Config
from bot.domain.assembly import AssemblyDesk
from bot.domain.households import HouseholdDesk
from bot.domain.points import PointsDesk
from bot.domain.reports import ReportDesk
from bot.domain.volunteers import VolunteerDesk
from storage.repos import FeedbackRepo, ResidentRepo


@dataclass(frozen=True, slots=True)
class Services:
    config: Config
    clock: Callable[[], float]
    residents: ResidentRepo
    feedback: FeedbackRepo
    volunteers: VolunteerDesk
    points: PointsDesk
    reports: ReportDesk
    households: HouseholdDesk
    assembly: AssemblyDesk
