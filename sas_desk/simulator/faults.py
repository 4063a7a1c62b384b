"""Fault injection for the simulated vendors (and the directory source).

A fault specification is a list of ``kind[:argument]`` items separated by
commas or semicolons, e.g. ``latency:300,error:0.2``:

``latency:MS`` / ``latency:MIN-MAX``
    answer after MS milliseconds (or a uniform draw between MIN and MAX);
``error:RATE`` / ``error:RATE:STATUS``
    answer an OperationOutcome with HTTP STATUS (default 500) for that share
    of the requests (``error:1`` always, ``error:0.5`` about one in two, drawn
    from a generator seeded per target, so a run is reproducible);
``hang``
    never answer: the request waits until the client hangs up or the
    simulator stops (``Simulator.stop()`` returns promptly all the same; on a
    TLS connection a hang is capped at :data:`HANG_LIMIT_S`);
``broken-json``
    a 200 ``application/fhir+json`` answer cut in the middle of the JSON;
``oversized:MB``
    the real answer padded with JSON whitespace to MB mebibytes (``0.5`` allowed).

Where faults come from, combined (a query fault adds to the configured one):

- the simulator configuration: ``Simulator(faults={"hygie": "latency:300"})``,
  the ``[demo]``-style mapping ``{"simulator_faults": {"hygie": "hang"}}``, or
  at run time ``Simulator.set_faults("hygie", "error:1")``; a target is a
  vendor name, or ``directory`` for the directory feed;
- the query string of one request: ``…/Slot?…&_fault=latency:300``
  (``%2C`` or ``,`` between items), with the simulator's admin token in the
  ``X-Simulator-Token`` header (else 403).  A malformed ``_fault`` is answered 400.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, replace

__all__ = ["HANG_LIMIT_S", "FaultSpec", "FaultSyntaxError", "parse_faults"]

#: A hanging request gives up after this long when the client's departure
#: cannot be noticed (TLS connections).
HANG_LIMIT_S = 600.0
#: The largest oversized body the simulator agrees to build: just above the
#: vendor client's 32 MiB cap (what the fault is for), never hundreds of MiB.
MAX_OVERSIZED_MB = 40.0


class FaultSyntaxError(ValueError):
    """A fault specification that cannot be read."""


@dataclass(frozen=True)
class FaultSpec:
    latency_ms: tuple[float, float] = (0.0, 0.0)
    error_rate: float = 0.0
    error_status: int = 500
    hang: bool = False
    broken_json: bool = False
    oversized_mb: float = 0.0

    @property
    def active(self) -> bool:
        return self != FaultSpec()

    def combine(self, other: FaultSpec) -> FaultSpec:
        """``other`` (e.g. a query fault) on top of ``self`` (the configured one)."""
        if not other.active:
            return self
        merged = self
        if other.latency_ms != (0.0, 0.0):
            merged = replace(merged, latency_ms=other.latency_ms)
        if other.error_rate:
            merged = replace(merged, error_rate=other.error_rate, error_status=other.error_status)
        if other.hang:
            merged = replace(merged, hang=True)
        if other.broken_json:
            merged = replace(merged, broken_json=True)
        if other.oversized_mb:
            merged = replace(merged, oversized_mb=other.oversized_mb)
        return merged

    def latency_s(self, rng: random.Random) -> float:
        low, high = self.latency_ms
        if high <= 0:
            return 0.0
        return (low if low == high else rng.uniform(low, high)) / 1000.0


def _number(kind: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise FaultSyntaxError(f"{kind}: not a number: {raw!r}") from None
    if value != value or value < 0 or value == float("inf"):
        raise FaultSyntaxError(f"{kind}: invalid value {raw!r}")
    return value


def parse_faults(text: str | None) -> FaultSpec:
    """Read a fault specification (see the module docstring); ``""`` = none."""
    spec = FaultSpec()
    if not text:
        return spec
    for item in text.replace(";", ",").split(","):
        item = item.strip()
        if not item:
            continue
        kind, _, arg = item.partition(":")
        kind = kind.strip().lower()
        arg = arg.strip()
        if kind == "latency":
            if not arg:
                raise FaultSyntaxError("latency needs milliseconds: latency:300")
            low_raw, dash, high_raw = arg.partition("-")
            low = _number(kind, low_raw)
            high = _number(kind, high_raw) if dash else low
            if high < low:
                raise FaultSyntaxError(f"latency: {low:g} > {high:g}")
            spec = replace(spec, latency_ms=(low, high))
        elif kind == "error":
            rate_raw, _, status_raw = arg.partition(":")
            rate = _number(kind, rate_raw) if rate_raw else 1.0
            if rate > 1:
                raise FaultSyntaxError(f"error: rate {rate:g} is above 1")
            status = 500
            if status_raw:
                if not status_raw.isdigit() or not 400 <= int(status_raw) <= 599:
                    raise FaultSyntaxError(f"error: status must be 400–599, not {status_raw!r}")
                status = int(status_raw)
            spec = replace(spec, error_rate=rate, error_status=status)
        elif kind == "hang":
            if arg:
                raise FaultSyntaxError("hang takes no argument")
            spec = replace(spec, hang=True)
        elif kind in ("broken-json", "broken_json"):
            if arg:
                raise FaultSyntaxError("broken-json takes no argument")
            spec = replace(spec, broken_json=True)
        elif kind == "oversized":
            mb = _number(kind, arg.lower().removesuffix("mb").strip() if arg else "")
            if not 0 < mb <= MAX_OVERSIZED_MB:
                raise FaultSyntaxError(f"oversized: between 0 and {MAX_OVERSIZED_MB:g} MB")
            spec = replace(spec, oversized_mb=mb)
        else:
            raise FaultSyntaxError(f"unknown fault {kind!r}")
    return spec


class FaultBoard:
    """The configured faults per target, changeable at run time (thread-safe),
    with one seeded generator per target for error draws and latency ranges."""

    def __init__(self, seed: int, faults: dict[str, str | FaultSpec] | None = None) -> None:
        self._seed = seed
        self._lock = threading.Lock()
        self._specs: dict[str, FaultSpec] = {}
        self._rngs: dict[str, random.Random] = {}
        for target, spec in (faults or {}).items():
            self.set(target, spec)

    def set(self, target: str, spec: str | FaultSpec | None) -> None:
        parsed = spec if isinstance(spec, FaultSpec) else parse_faults(spec)
        with self._lock:
            if parsed.active:
                self._specs[target] = parsed
            else:
                self._specs.pop(target, None)

    def get(self, target: str) -> FaultSpec:
        with self._lock:
            return self._specs.get(target, FaultSpec())

    def draw(self, target: str) -> float:
        with self._lock:
            rng = self._rngs.get(target)
            if rng is None:
                rng = self._rngs[target] = random.Random(f"{self._seed}:faults:{target}")
            return rng.random()

    def rng(self, target: str) -> random.Random:
        with self._lock:
            rng = self._rngs.get(target)
            if rng is None:
                rng = self._rngs[target] = random.Random(f"{self._seed}:faults:{target}")
            return rng
