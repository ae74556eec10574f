"""The numbered main menu: each flow adds its entry, residents reply a number."""

from __future__ import annotations

from dataclasses import dataclass

from bot.conversation.router import Handler
from bot.services import Services

MENU_STATE = "menu:main"
FOOTER = "回复“帮助”随时查看本菜单，回复“取消”退出当前操作。"


@dataclass(frozen=True, slots=True)
class MenuEntry:
    label: str
    keyword: str
    start: Handler[Services]


class MainMenu:
    def __init__(self) -> None:
        self._entries: list[MenuEntry] = []

    def add(self, label: str, keyword: str, start: Handler[Services]) -> None:
        self._entries.append(MenuEntry(label, keyword, start))

    def __len__(self) -> int:
        return len(self._entries)

    def entry(self, number: int) -> MenuEntry | None:
        return self._entries[number - 1] if 1 <= number <= len(self._entries) else None

    def by_keyword(self, keyword: str) -> MenuEntry | None:
        return next((e for e in self._entries if e.keyword == keyword), None)

    def render(self) -> str:
        lines = ["请回复数字选择："]
        lines += [
            f"{i}. {e.label}（也可回复“{e.keyword}”）" for i, e in enumerate(self._entries, 1)
        ]
        lines.append(FOOTER)
        return "\n".join(lines)
