"""Parsing a 10,000-slot SAS searchset Bundle: our parser against fhir.resources.

    python bench/fhir_parse.py [--slots N] [--practitioners N] [--runs N]

Generates a synthetic "PS indiv" answer shaped like the guide's
``Bundle-ExampleBundlePSIndiv``: practitioners (IdNat_PS), one or two
PractitionerRoles each (a contained Location with address and position,
IDNST structure, phone), one Schedule per role (Practitioner + role actors),
and the slots spread over those schedules (slot types in ``meta.security``,
modes and free-text reasons in ``serviceType``, TRE-R38 specialty,
appointmentType, booking URL in ``comment``, times with milliseconds and
offset), every resource with its ``meta.profile``, ``fullUrl`` and
``search.mode``.  Then, from the same bytes, several times each, alternating:

* ours: ``sas_desk.services.fhir.bundle.parse_bundle(body)`` — JSON decoding,
  checks, domain objects, every slot resolved to its schedule, practitioner,
  role and place;
* the peer: ``fhir.resources`` (pydantic models; its ``R4B`` package, the one
  closest to R4 — 8.x models R5 by default and ships no plain R4),
  ``Bundle.model_validate_json(body)`` — JSON decoding and validation into
  models, references left unresolved.

Prints both timings side by side, the ratio (goal: ours ≥ 5× faster) and the
peak memory of each (tracemalloc, in a separate untimed run).  This is a
measurement: exit code 0 even when the goal is missed; 1 when the two parsers
do not agree on the number of slots (the run cannot be trusted); 2 when
fhir.resources is not installed (``pip install -e '.[bench]'``) or on bad
arguments.  The last line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

GOAL_RATIO = 5.0

SAS = "http://sas.fr/fhir/StructureDefinition/"
BASE = "https://agenda.example.fr/fhir"
TYPES = "https://mos.esante.gouv.fr/NOS/TRE_R314-TypeCreneau/FHIR/TRE-R314-TypeCreneau"
ACT = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
R38 = "https://mos.esante.gouv.fr/NOS/TRE_R38-SpecialiteOrdinale/FHIR/TRE-R38-SpecialiteOrdinale"
V2_0276 = "http://terminology.hl7.org/CodeSystem/v2-0276"
V2_0203 = "http://interopsante.org/fhir/CodeSystem/fr-v2-0203"
IDNPS = "urn:oid:1.2.250.1.71.4.2.1"
IDNST = "urn:oid:1.2.250.1.71.4.2.2"

SLOT_TYPE_SETS = (["PUBLIC"], ["PUBLIC", "PRO"], ["PRO"], ["SNP"], ["PUBLIC", "SNP"])
MODE_SETS = (["AMB"], ["AMB", "VR"], ["VR"], ["HH"])
REASONS = ("Visite de contrôle", "Visite urgente", "Renouvellement d'ordonnance")


def _coding(system: str, code: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code}]}


def _entry(resource: dict[str, Any], mode: str) -> dict[str, Any]:
    url = f"{BASE}/{resource['resourceType']}/{resource['id']}"
    return {"fullUrl": url, "resource": resource, "search": {"mode": mode}}


def make_bundle(slots: int, practitioners: int) -> bytes:
    """A deterministic searchset Bundle of ``slots`` slots (see the module doc)."""
    paris = timezone(timedelta(hours=1))
    t0 = datetime(2026, 12, 1, 8, 0, tzinfo=paris)
    schedules: list[str] = []
    includes: list[dict[str, Any]] = []
    for p in range(practitioners):
        pid = f"P{p}"
        rpps = f"8{10000000000 + p:011d}"
        includes.append(
            _entry(
                {
                    "resourceType": "Practitioner",
                    "id": pid,
                    "meta": {"profile": [SAS + "FrPractitionerAgregateur"]},
                    "identifier": [
                        {
                            "type": _coding(V2_0203, "IDNPS"),
                            "system": IDNPS,
                            "value": rpps,
                        }
                    ],
                    "name": [{"family": f"NOM{p}", "given": [f"Prénom{p}"]}],
                },
                "include",
            )
        )
        for place in range(2 if p % 5 == 0 else 1):
            rid, lid, sid = f"R{p}-{place}", f"L{p}-{place}", f"S{p}-{place}"
            includes.append(
                _entry(
                    {
                        "resourceType": "PractitionerRole",
                        "id": rid,
                        "meta": {"profile": [SAS + "FrPractitionerRoleExerciceAgregateur"]},
                        "contained": [
                            {
                                "resourceType": "Location",
                                "id": lid,
                                "meta": {"profile": [SAS + "FrLocationAgregateur"]},
                                "identifier": [
                                    {
                                        "type": _coding(
                                            "http://interopsante.org/fhir/CodeSystem/"
                                            "fr-location-identifier-type",
                                            "INTRN",
                                        ),
                                        "system": "urn:oid:1.1.111.1.111.1.1.1",
                                        "value": lid,
                                    }
                                ],
                                "address": {
                                    "line": [f"{p % 200 + 1} rue de la Gare"],
                                    "city": "LYON",
                                    "postalCode": f"6900{place + 1}",
                                },
                                "position": {
                                    "latitude": round(45.70 + (p % 97) / 1000, 6),
                                    "longitude": round(4.80 + (p % 89) / 1000, 6),
                                },
                            }
                        ],
                        "practitioner": {"reference": f"Practitioner/{pid}"},
                        "organization": {
                            "identifier": {
                                "type": _coding(V2_0203, "IDNST"),
                                "system": IDNST,
                                "value": f"1{690000000 + p:09d}",
                            }
                        },
                        "location": [{"reference": f"#{lid}"}],
                        "telecom": [{"system": "phone", "value": f"+3347{p % 10_000_000:07d}"}],
                    },
                    "include",
                )
            )
            includes.append(
                _entry(
                    {
                        "resourceType": "Schedule",
                        "id": sid,
                        "meta": {"profile": [SAS + "FrScheduleAgregateur"]},
                        "actor": [
                            {"reference": f"Practitioner/{pid}"},
                            {"reference": f"PractitionerRole/{rid}"},
                        ],
                    },
                    "include",
                )
            )
            schedules.append(sid)
    matches: list[dict[str, Any]] = []
    for n in range(slots):
        start = t0 + timedelta(minutes=20 * (n // len(schedules)) + 5 * (n % 4))
        end = start + timedelta(minutes=20)
        service_type = [_coding(ACT, m) for m in MODE_SETS[n % len(MODE_SETS)]]
        service_type.append({"text": REASONS[n % len(REASONS)]})
        matches.append(
            _entry(
                {
                    "resourceType": "Slot",
                    "id": f"slot{n}",
                    "meta": {
                        "profile": [SAS + "FrSlotAgregateur"],
                        "security": [
                            {"system": TYPES, "code": c}
                            for c in SLOT_TYPE_SETS[n % len(SLOT_TYPE_SETS)]
                        ],
                    },
                    "serviceType": service_type,
                    "specialty": [_coding(R38, "SM54")],
                    "appointmentType": _coding(V2_0276, "WALKIN" if n % 10 == 0 else "ROUTINE"),
                    "schedule": {"reference": f"Schedule/{schedules[n % len(schedules)]}"},
                    "status": "free",
                    "start": start.isoformat(timespec="milliseconds"),
                    "end": end.isoformat(timespec="milliseconds"),
                    "comment": f"https://agenda.example.fr/rdv/{n % len(schedules)}",
                },
                "match",
            )
        )
    bundle = {
        "resourceType": "Bundle",
        "id": "bench",
        "meta": {"profile": [SAS + "BundleAgregateur"]},
        "type": "searchset",
        "total": slots,
        "link": [{"relation": "self", "url": f"{BASE}/Slot?status=free&_count=1000"}],
        "entry": matches + includes,
    }
    return json.dumps(bundle, ensure_ascii=False).encode("utf-8")


def timed(fn: Callable[[], Any]) -> tuple[float, float, Any]:
    """Wall time, this process's CPU time, and the result."""
    gc.collect()
    t, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t, time.process_time() - cpu, out


def peak_mib(fn: Callable[[], Any]) -> float:
    gc.collect()
    tracemalloc.start()
    try:
        out = fn()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    del out
    return peak / 2**20


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--slots", type=int, default=10_000)
    ap.add_argument("--practitioners", type=int, default=500)
    ap.add_argument("--runs", type=int, default=5, help="timed runs of each (≥ 1)")
    args = ap.parse_args(argv)
    if args.slots < 1 or args.practitioners < 1 or args.runs < 1:
        ap.error("--slots, --practitioners and --runs must be ≥ 1")
    try:
        import fhir.resources
        from fhir.resources.R4B.bundle import Bundle as PeerBundle
    except ImportError:
        print(
            "fhir.resources is not installed: it is the peer of this benchmark.\n"
            "Install it with: pip install -e '.[bench]'  (or: pip install fhir.resources)",
            file=sys.stderr,
        )
        return 2
    from sas_desk.services.fhir.bundle import parse_bundle

    body = make_bundle(args.slots, args.practitioners)
    print(
        f"Bundle: {args.slots:,} slots, {args.practitioners:,} practitioners, "
        f"{len(body) / 2**20:.1f} MiB of JSON"
    )
    print(f"peer: fhir.resources {fhir.resources.__version__} (R4B models), pydantic")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average (1 min) before the runs: {load:.2f} on {os.cpu_count()} CPUs")

    def ours() -> Any:
        return parse_bundle(body)

    def peer() -> Any:
        return PeerBundle.model_validate_json(body)

    # warm-up (imports, caches) and agreement check
    ours_result = ours()
    peer_result = peer()
    peer_slots = sum(1 for e in peer_result.entry or () if e.resource.__resource_type__ == "Slot")
    ok = len(ours_result.slots) == peer_slots == args.slots and not ours_result.skipped
    del ours_result, peer_result

    ours_t: list[float] = []
    peer_t: list[float] = []
    ours_cpu: list[float] = []
    peer_cpu: list[float] = []
    for run in range(args.runs):
        pair = [("ours", ours, ours_t, ours_cpu), ("peer", peer, peer_t, peer_cpu)]
        if run % 2:
            pair.reverse()
        for _name, fn, series, cpu_series in pair:
            elapsed, cpu, out = timed(fn)
            series.append(elapsed)
            cpu_series.append(cpu)
            del out
    ours_peak = peak_mib(ours)
    peer_peak = peak_mib(peer)

    ours_med, peer_med = statistics.median(ours_t), statistics.median(peer_t)
    ratio = peer_med / ours_med
    passed = ratio >= GOAL_RATIO
    print()
    print(f"{'':24} {'ours':>10} {'fhir.resources':>15}")
    print(f"{'median (s)':24} {ours_med:10.3f} {peer_med:15.3f}")
    print(f"{'min (s)':24} {min(ours_t):10.3f} {min(peer_t):15.3f}")
    print(f"{'max (s)':24} {max(ours_t):10.3f} {max(peer_t):15.3f}")
    print(
        f"{'CPU, median (s)':24} {statistics.median(ours_cpu):10.3f} "
        f"{statistics.median(peer_cpu):15.3f}"
    )
    print(
        f"{'per slot (µs, median)':24} {ours_med / args.slots * 1e6:10.1f} "
        f"{peer_med / args.slots * 1e6:15.1f}"
    )
    print(f"{'peak memory (MiB)':24} {ours_peak:10.1f} {peer_peak:15.1f}")
    print()
    print(
        f"ratio fhir.resources / ours (median): {ratio:.1f}× — goal ≥ {GOAL_RATIO:g}×: "
        f"{'PASS' if passed else 'FAIL'}"
    )
    if not ok:
        print(f"UNTRUSTED: ours and the peer disagree on the slots (peer: {peer_slots})")
    result = {
        "slots": args.slots,
        "practitioners": args.practitioners,
        "bytes": len(body),
        "runs": args.runs,
        "load_before": round(load, 2),
        "ours_median_s": round(ours_med, 4),
        "ours_min_s": round(min(ours_t), 4),
        "ours_cpu_median_s": round(statistics.median(ours_cpu), 4),
        "ours_cpu_min_s": round(min(ours_cpu), 4),
        "peer_cpu_median_s": round(statistics.median(peer_cpu), 4),
        "peer": f"fhir.resources {fhir.resources.__version__} R4B",
        "peer_median_s": round(peer_med, 4),
        "peer_min_s": round(min(peer_t), 4),
        "ratio": round(ratio, 2),
        "ours_peak_mib": round(ours_peak, 1),
        "peer_peak_mib": round(peer_peak, 1),
        "goal_ratio": GOAL_RATIO,
        "trusted": ok,
        "pass": passed and ok,
    }
    print("RESULT " + json.dumps(result))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
