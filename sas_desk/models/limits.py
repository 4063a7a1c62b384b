"""What an input may hold, and a JSON decoder that enforces it.  Pure: no I/O.

Every file or message SAS Desk reads goes through these limits (the reading
itself, bounded in size, lives in :mod:`sas_desk.services.bounded`): a JSON
document nested deeper than :data:`MAX_JSON_DEPTH`, an integer longer than
:data:`MAX_INT_DIGITS` digits, a non-finite number or a NUL character is
refused with a French message that says where (line and column, or the JSON
path), never with a ``RecursionError`` or ``ValueError`` traceback.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from sas_desk.models.errors import KnownError

__all__ = [
    "MAX_INT_DIGITS",
    "MAX_JSON_DEPTH",
    "InputError",
    "decode_json",
    "decode_utf8",
    "json_path",
    "line_of",
]

#: Deepest JSON accepted (an RS-EDA envelope is ~12 levels, a FHIR Bundle ~10).
MAX_JSON_DEPTH = 64
#: Longest integer accepted, sign excluded (an int64 has 19 digits).
MAX_INT_DIGITS = 20


class InputError(KnownError, ValueError):
    """An input is refused.  :attr:`message_fr` names the source (file), the
    place in it (``ligne 3``, ``$.patient[0]``) when known, and the reason."""

    def __init__(self, detail_fr: str, where: str = "", source: str = "") -> None:
        self.detail_fr = detail_fr
        self.where = where
        self.source = source
        head = ", ".join(p for p in (source, where) if p)
        super().__init__(f"{head} : {detail_fr}" if head else detail_fr)

    def located(self, source: str) -> InputError:
        """The same error, naming *source* (the file)."""
        return InputError(self.detail_fr, self.where, source)


def line_of(text: str, offset: int) -> int:
    """1-based line number of *offset* in *text*."""
    return text.count("\n", 0, max(0, offset)) + 1


def decode_utf8(data: bytes) -> str:
    """Strict UTF-8 (a leading BOM is dropped); NUL refused."""
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"texte non UTF-8 (octet 0x{data[exc.start]:02x} à la position {exc.start})",
            f"ligne {line}",
        ) from None
    nul = text.find("\x00")
    if nul >= 0:
        raise InputError(
            "caractère NUL : fichier binaire ou corrompu", f"ligne {line_of(text, nul)}"
        )
    return text


class _TooLong(ValueError):
    pass


class _NotFinite(ValueError):
    pass


def json_path(path: tuple[str | int, ...]) -> str:
    """``("patient", 0, "detail")`` -> ``$.patient[0].detail``."""
    out = ["$"]
    for part in path:
        out.append(f"[{part}]" if isinstance(part, int) else f".{part}")
    return "".join(out)


def decode_json(
    data: bytes | str,
    *,
    max_depth: int = MAX_JSON_DEPTH,
    max_int_digits: int = MAX_INT_DIGITS,
) -> Any:
    """Parse JSON within the limits, or raise :class:`InputError` (French,
    located).  ``NaN``/``Infinity`` and numbers overflowing a float are refused."""
    text = decode_utf8(data) if isinstance(data, bytes) else data.removeprefix("\ufeff")
    if "\x00" in text:
        raise InputError("caractère NUL : fichier binaire ou corrompu")

    def parse_int(raw: str) -> int:
        if len(raw) - raw.startswith("-") > max_int_digits:
            raise _TooLong(raw)
        return int(raw)

    def parse_float(raw: str) -> float:
        value = float(raw)
        if not math.isfinite(value):
            raise _NotFinite(raw)
        return value

    def parse_constant(raw: str) -> Any:
        raise _NotFinite(raw)

    try:
        value = json.loads(
            text, parse_int=parse_int, parse_float=parse_float, parse_constant=parse_constant
        )
    except json.JSONDecodeError as exc:
        if not text.strip():
            raise InputError("fichier vide : un document JSON est attendu") from None
        raise InputError(
            f"JSON invalide ({_reason_fr(exc.msg)}, colonne {exc.colno})", f"ligne {exc.lineno}"
        ) from None
    except RecursionError:
        raise InputError(f"JSON trop imbriqué (plus de {max_depth} niveaux)") from None
    except _TooLong as exc:
        where = _find(text, re.escape(str(exc)))
        raise InputError(f"nombre entier de plus de {max_int_digits} chiffres", where) from None
    except _NotFinite as exc:
        where = _find(text, re.escape(str(exc)))
        raise InputError(f"nombre hors limites ou non fini « {str(exc)[:20]} »", where) from None
    _check_tree(value, max_depth)
    return value


def _find(text: str, pattern: str) -> str:
    found = re.search(pattern, text)
    return f"ligne {line_of(text, found.start())}" if found else ""


_REASONS = {
    "Expecting value": "valeur attendue",
    "Expecting property name enclosed in double quotes": "nom de champ entre guillemets attendu",
    "Expecting ',' delimiter": "virgule attendue",
    "Expecting ':' delimiter": "deux-points attendu",
    "Extra data": "contenu après la fin du document",
    "Unterminated string starting at": "texte non terminé",
    "Invalid control character at": "caractère de contrôle dans un texte",
    "Invalid \\escape": "séquence d'échappement invalide",
}


def _reason_fr(msg: str) -> str:
    return _REASONS.get(msg, msg)


def _check_tree(root: Any, max_depth: int) -> None:
    """Depth and NUL characters, walked without recursion (linear)."""
    stack: list[tuple[Any, int, tuple[str | int, ...]]] = [(root, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if depth > max_depth:
            raise InputError(f"JSON trop imbriqué (plus de {max_depth} niveaux)", json_path(path))
        if isinstance(node, dict):
            for key, child in node.items():
                if "\x00" in key:
                    raise InputError("caractère NUL dans un nom de champ", json_path(path))
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1, (*path, key)))
                elif isinstance(child, str) and "\x00" in child:
                    raise InputError("caractère NUL dans un texte", json_path((*path, key)))
        elif isinstance(node, list):
            for i, child in enumerate(node):
                if isinstance(child, dict | list):
                    stack.append((child, depth + 1, (*path, i)))
                elif isinstance(child, str) and "\x00" in child:
                    raise InputError("caractère NUL dans un texte", json_path((*path, i)))
        elif isinstance(node, str) and "\x00" in node:
            raise InputError("caractère NUL dans un texte", json_path(path))
