"""One bounded reader for every file SAS Desk is given.

The size is capped while reading (``/dev/zero``, a FIFO or a file that grows
cannot exhaust memory: at most ``max_bytes + 1`` bytes are ever read), a
directory or an unreadable file is refused, and every refusal is one
:class:`~sas_desk.models.limits.InputError` whose French message names the
file, plus one log line (path and reason, never the content).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from sas_desk.models.limits import MAX_INT_DIGITS, MAX_JSON_DEPTH, InputError, decode_json

__all__ = ["MAX_CONFIG_BYTES", "MAX_MESSAGE_BYTES", "load_json", "read_bounded", "size_fr"]

log = logging.getLogger("sas_desk.input")

#: An RS-EDA message (notes included) is a few kB; 2 MiB leaves room.
MAX_MESSAGE_BYTES = 2 * 1024 * 1024
#: A configuration file is a few hundred bytes.
MAX_CONFIG_BYTES = 256 * 1024
_CHUNK = 1024 * 1024


def size_fr(size: int) -> str:
    if size < 1024 * 1024:
        return f"{max(1, size // 1024)} Ko"
    return f"{size / (1024 * 1024):.1f} Mo".replace(".", ",")


def refuse(error: InputError) -> InputError:
    """Log *error* (one precise line) and return it, for ``raise refuse(...)``."""
    log.warning("input refused: %s", error.message_fr)
    return error


def read_bounded(path: Path, max_bytes: int) -> bytes:
    """The bytes of *path*, or :class:`InputError` when the file is missing,
    unreadable, a directory, or longer than *max_bytes* (checked while
    reading, so special files and growing files are bounded too)."""
    name = str(path)
    too_big = f"trop volumineux (plus de {size_fr(max_bytes)})"
    try:
        with path.open("rb") as handle:
            chunks: list[bytes] = []
            total = 0
            while total <= max_bytes:
                chunk = handle.read(min(_CHUNK, max_bytes + 1 - total))
                if not chunk:
                    break
                chunks.append(chunk)
                total += len(chunk)
    except IsADirectoryError:
        raise refuse(InputError("c'est un dossier, pas un fichier", source=name)) from None
    except FileNotFoundError:
        raise refuse(InputError("fichier illisible (introuvable)", source=name)) from None
    except OSError as exc:
        reason = exc.strerror or exc.__class__.__name__
        raise refuse(InputError(f"fichier illisible ({reason})", source=name)) from None
    if total > max_bytes:
        raise refuse(InputError(too_big, source=name))
    return b"".join(chunks)


def load_json(
    path: Path,
    max_bytes: int,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_int_digits: int = MAX_INT_DIGITS,
) -> Any:
    """:func:`read_bounded` then :func:`~sas_desk.models.limits.decode_json`."""
    data = read_bounded(path, max_bytes)
    try:
        return decode_json(data, max_depth=max_depth, max_int_digits=max_int_digits)
    except InputError as exc:
        raise refuse(exc.located(str(path))) from None
