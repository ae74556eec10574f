"""Resident and staff flows, one module per flow, assembled in matching order."""

from __future__ import annotations

from bot.conversation.router import Router
from bot.services import Services
from handlers import basics, fallback, feedback
from handlers.menu import MainMenu


def build_router() -> Router[Services]:
    """Global commands first, then each flow, then the fallbacks that catch the rest."""
    menu = MainMenu()
    root: Router[Services] = Router("root")
    root.include(basics.build(menu), feedback.build(menu), fallback.build(menu))
    return root
