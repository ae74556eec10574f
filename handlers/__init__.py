"""Resident and staff flows, one module per flow, assembled in matching order."""

from __future__ import annotations

from bot.conversation.router import Router
from bot.services import Services
from handlers import (
    assembly,
    basics,
    checkin,
    fallback,
    feedback,
    gridwork,
    household,
    points,
    reports,
    volunteer,
)
from handlers.menu import MainMenu


def build_router() -> Router[Services]:
    """Global commands first, then each flow, then the fallbacks that catch the rest.

    Check-in comes before the basics: it answers the ``subscribe``/``SCAN`` events
    that carry an activity's scene, which the basics would take as a plain follow.
    The order of the flows is the order of the main menu.
    """
    menu = MainMenu()
    root: Router[Services] = Router("root")
    root.include(
        checkin.build(menu),
        basics.build(menu),
        volunteer.build(menu),
        points.build(menu),
        reports.build(menu),
        gridwork.build(menu),
        # Before household: 坝坝会/投票 typed while binding start that flow.
        assembly.build(menu),
        household.build(menu),
        feedback.build(menu),
        fallback.build(menu),
    )
    return root
