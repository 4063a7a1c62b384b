"""What the screenshot scripts share: the output folder, waiting for a
condition on the running loop, and saving a widget as PNG.  Imported by the
scripts of this folder (``python scripts/X.py`` puts it on the path)."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


def out_dir(default: str = "shots") -> Path:
    """The folder named on the command line (created), else ``default``."""
    out = Path(sys.argv[1] if len(sys.argv) > 1 else default).resolve()
    out.mkdir(parents=True, exist_ok=True)
    return out


async def until(predicate: Callable[[], Any], timeout: float) -> None:
    """Resolve once ``predicate()`` holds; TimeoutError after ``timeout`` s."""
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await asyncio.sleep(0.01)


def saver(out: Path) -> Callable[[Any, str], None]:
    """``save(widget, name)``: the widget grabbed to ``out/name.png``."""

    def save(widget: Any, name: str) -> None:
        path = out / f"{name}.png"
        widget.grab().save(str(path))
        print(f"saved {path}", flush=True)

    return save
