"""A small Server-Sent Events reader over an httpx streaming response."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class Message:
    event: str
    id: str
    data: str
    comment: str = ""

    def json(self) -> Any:
        return json.loads(self.data)


class SseReader:
    def __init__(self, response: httpx.Response) -> None:
        self._lines: AsyncIterator[str] = response.aiter_lines()

    async def next(self, timeout: float = 10.0, *, comments: bool = False) -> Message:
        """The next message (comment lines only when ``comments``)."""
        async with asyncio.timeout(timeout):
            event, ident, data, comment = "message", "", [], ""
            async for line in self._lines:
                if line == "":
                    if data or (comment and comments):
                        return Message(event, ident, "\n".join(data), comment)
                    event, ident, data, comment = "message", "", [], ""
                    continue
                field, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "":
                    comment = value
                elif field == "event":
                    event = value
                elif field == "id":
                    ident = value
                elif field == "data":
                    data.append(value)
            raise EOFError("stream ended")
