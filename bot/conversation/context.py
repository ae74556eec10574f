"""The per-user conversation context a handler reads and changes.

State names are readable strings such as ``"report:location"``; the data is a
small JSON object. The engine loads the context under the user's lock, hands it
to one handler and saves it only if the handler changed it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any


class Context:
    __slots__ = ("_changed", "_data", "_state", "expired_state", "openid")

    def __init__(
        self,
        openid: str,
        state: str | None = None,
        data: Mapping[str, Any] | None = None,
        *,
        expired_state: str | None = None,
    ) -> None:
        self.openid = openid
        self._state = state
        self._data: dict[str, Any] = copy.deepcopy(dict(data)) if data else {}
        self._changed = False
        # The flow that idled out just before this message, so the reply can say so.
        self.expired_state = expired_state

    @property
    def state(self) -> str | None:
        return self._state

    @property
    def data(self) -> Mapping[str, Any]:
        return self._data

    @property
    def changed(self) -> bool:
        return self._changed

    def set_state(self, state: str | None, **data: Any) -> None:
        """Enter ``state``; keyword arguments are merged into the flow's data."""
        self._state = state
        self._data.update(data)
        self._changed = True

    def update(self, **data: Any) -> None:
        self._data.update(data)
        self._changed = True

    def clear(self) -> None:
        """Leave any flow and forget its data."""
        if self._state is not None or self._data:
            self._changed = True
        self._state = None
        self._data = {}
