"""A service class with live attributes, for the tests of the API, the clients and the
store: a thermostat whose loop reads its target at every turn and records what it saw."""

from __future__ import annotations

import asyncio

from pydantic import Field

import taskloom


class Thermostat(taskloom.Service):
    """Keeps a room at `target` degrees."""

    target: float = Field(20.0, ge=-50, le=100, description="Degrees to keep the room at.")
    mode: str = "auto"
    heating: bool = False

    def __init__(self) -> None:
        self._turns: asyncio.Queue[None] = asyncio.Queue()
        self._seen: list[float] = []

    @taskloom.loop(autostart=True)
    async def regulate(self) -> None:
        """One turn per item of `_turns`: read the target, switch the heating."""
        while True:
            await self._turns.get()
            self._seen.append(self.target)
            self.heating = self.target > 19.0
