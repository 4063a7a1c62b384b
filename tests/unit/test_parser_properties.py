"""Property tests for every parser and importer (issue 18): for any input, a
result or the parser's known error, never another exception.

Inputs are valid documents mutated (subtrees replaced by arbitrary JSON,
lines deleted, duplicated, folded, replaced by noise) and raw bytes.  The
number of examples is bounded so CI stays fast (``HYPOTHESIS_EXAMPLES`` raises
it for a longer hunt); with ``CI`` set the run is derandomised (reproducible).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sas_desk.models.dossier import Dossier
from sas_desk.models.limits import InputError, decode_json
from sas_desk.models.rseda import from_rseda, to_rseda
from sas_desk.models.validation import ValidationError, parse_position
from sas_desk.services.config import Config, ConfigError, load_config
from sas_desk.services.fhir.bundle import BundleError, parse_bundle
from sas_desk.services.roster.formats import (
    ParsedRoster,
    RosterFormatError,
    parse_roster,
    parse_sectors,
)
from tests.helpers.rosters import JSON_ROSTER
from tests.unit.test_fhir_bundle import bundle, practitioner, role, schedule, slot
from tests.unit.test_roster_import import HEADER, ICS
from tests.unit.test_rseda import full_dossier

EXAMPLES = int(os.environ.get("HYPOTHESIS_EXAMPLES", "50"))
bounded = settings(
    max_examples=EXAMPLES,
    deadline=timedelta(seconds=5),  # per example: catches a quadratic blow-up, not CI jitter
    derandomize=bool(os.environ.get("CI")),
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)

# ------------------------------------------------------------------ strategies

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["", " ", "\x00", "../..", "2024-01-04T08:01:00+01:00", "P2", "NaN"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda kids: (
        st.lists(kids, max_size=4) | st.dictionaries(st.text(max_size=8), kids, max_size=4)
    ),
    max_leaves=10,
)


def _slots(doc: Any) -> list[tuple[Any, Any]]:
    """Every (container, key) of a JSON document."""
    out: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        node = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in list(items):
            out.append((node, key))
            if isinstance(child, dict | list):
                stack.append(child)
    return out


@st.composite
def mutated(draw: st.DrawFn, base: Any) -> Any:
    doc = copy.deepcopy(base)
    for _ in range(draw(st.integers(min_value=1, max_value=5))):
        slots = _slots(doc)
        if not slots:
            break
        parent, key = draw(st.sampled_from(slots))
        action = draw(st.sampled_from(["replace", "replace", "delete", "grow"]))
        if action == "delete":
            del parent[key]
        elif action == "grow" and isinstance(parent[key], list):
            parent[key] = parent[key] * draw(st.integers(min_value=0, max_value=30))
        else:
            parent[key] = draw(JSON_VALUES)
    return doc


@st.composite
def mutated_lines(draw: st.DrawFn, text: str, noise: st.SearchStrategy[str]) -> str:
    lines = text.splitlines()
    for _ in range(draw(st.integers(min_value=1, max_value=6))):
        i = draw(st.integers(min_value=0, max_value=max(0, len(lines) - 1)))
        action = draw(st.sampled_from(["replace", "delete", "duplicate", "fold", "cut"]))
        if not lines:
            lines.append(draw(noise))
        elif action == "replace":
            lines[i] = draw(noise)
        elif action == "delete":
            del lines[i]
        elif action == "duplicate":
            lines.insert(i, lines[i])
        elif action == "fold" and lines[i]:
            at = draw(st.integers(min_value=0, max_value=len(lines[i])))
            lines[i : i + 1] = [lines[i][:at], " " + lines[i][at:]]
        elif lines[i]:
            lines[i] = lines[i][: draw(st.integers(min_value=0, max_value=len(lines[i])))]
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines)


def never_raises_other(call: Callable[[], Any], *known: type[BaseException]) -> Any:
    """Run *call*; a known error is a fine answer, anything else fails the test."""
    try:
        return call()
    except known as exc:
        message = str(exc)
    assert message  # a message, always
    return None


# ------------------------------------------------------------------ JSON reader


@bounded
@given(st.binary(max_size=300) | JSON_VALUES.map(lambda v: json.dumps(v).encode()))
def test_decode_json_gives_a_value_or_an_input_error(data: bytes) -> None:
    never_raises_other(lambda: decode_json(data), InputError)


# ------------------------------------------------------------------ RS-EDA

RSEDA = to_rseda(full_dossier())


def _import(body: Any) -> Dossier | None:
    dossier: Dossier | None = never_raises_other(lambda: from_rseda(body), ValidationError)
    if dossier is not None:  # what was accepted can be stored and sent on
        to_rseda(dossier)
        assert (
            Dossier.from_dict(json.loads(json.dumps(dossier.to_dict()))).case_id == dossier.case_id
        )
    return dossier


@bounded
@given(mutated(RSEDA))
def test_rseda_import_of_any_mutation_gives_a_dossier_or_a_validation_error(body: Any) -> None:
    _import(body)


@bounded
@given(mutated(RSEDA))
def test_rseda_import_from_bytes_gives_a_dossier_or_a_known_error(body: Any) -> None:
    data = json.dumps(body).encode()
    decoded = never_raises_other(lambda: decode_json(data), InputError)
    if decoded is not None:
        _import(decoded)


# ------------------------------------------------------------------ FHIR Bundle

BUNDLE = bundle(slot(), schedule(), practitioner(), role())


@bounded
@given(mutated(BUNDLE))
def test_fhir_bundle_of_any_mutation_gives_slots_or_a_bundle_error(body: Any) -> None:
    never_raises_other(lambda: parse_bundle(json.dumps(body).encode()), BundleError)
    never_raises_other(lambda: parse_bundle(body), BundleError)


@bounded
@given(st.binary(max_size=400))
def test_fhir_bundle_of_any_bytes_gives_slots_or_a_bundle_error(data: bytes) -> None:
    never_raises_other(lambda: parse_bundle(data), BundleError)


# ------------------------------------------------------------------ rosters

CSV = (
    HEADER + "\n03/01/2027;09:00;12:00;69-C;69123|69266;Martin;Claire;10101010101;12 rue Pasteur;"
    "69003;Lyon;04 65 71 12 34;Sonner\n"
    "2027-01-03;20:00;08:00+1;69-C;69123;Nuit;;;;;;+33465710002;\n"
)
CELLS = st.sampled_from(
    [
        "03/01/2027",
        "2027-02-30",
        "9h",
        "08:00+1",
        "25:00",
        "69-C",
        "69123|2A004",
        "=1+1",
        "@x",
        "+33465711234",
        "0800",
        "10101010101",
        "",
        '"',
        ";",
        "\x00",
        "é",
    ]
) | st.text(max_size=12)
CSV_NOISE = st.lists(CELLS, max_size=15).map(";".join)
ICS_NOISE = st.sampled_from(
    [
        "BEGIN:VEVENT",
        "END:VEVENT",
        "DTSTART:20270103T090000",
        "DTSTART;TZID=Mars/Olympus:2027",
        "DURATION:P99999W",
        "DURATION:PT",
        "RRULE:FREQ=DAILY",
        "X-SAS-COMMUNES:69123|",
        "DTEND:",
        "X-SAS-TELEPHONE:12",
        "STATUS:CANCELLED",
        "BEGIN:VCALENDAR",
        "END:VCALENDAR",
    ]
) | st.text(max_size=30)


def _roster(data: bytes, name: str) -> None:
    parsed = never_raises_other(lambda: parse_roster(data, name), RosterFormatError)
    assert parsed is None or isinstance(parsed, ParsedRoster)


@bounded
@given(mutated_lines(CSV, CSV_NOISE), st.sampled_from(["utf-8", "cp1252", "utf-8-sig"]))
def test_roster_csv_gives_a_roster_or_a_format_error(text: str, encoding: str) -> None:
    _roster(text.encode(encoding, "replace"), "gardes.csv")


@bounded
@given(mutated_lines(ICS, ICS_NOISE))
def test_roster_ics_gives_a_roster_or_a_format_error(text: str) -> None:
    _roster(text.encode("utf-8", "surrogatepass"), "gardes.ics")


@bounded
@given(mutated(JSON_ROSTER))
def test_roster_json_gives_a_roster_or_a_format_error(doc: Any) -> None:
    _roster(json.dumps(doc).encode(), "gardes.json")


@bounded
@given(st.binary(max_size=300), st.sampled_from(["a.csv", "a.ics", "a.json", "a"]))
def test_roster_of_any_bytes_gives_a_roster_or_a_format_error(data: bytes, name: str) -> None:
    _roster(data, name)


@bounded
@given(
    mutated(JSON_ROSTER["sectors"]).map(lambda v: json.dumps(v).encode())
    | mutated_lines("secteur;nom;communes\n69-C;Lyon centre;69123|69266\n", CSV_NOISE).map(
        lambda t: t.encode("utf-8", "surrogatepass")
    )
)
def test_sectors_give_sectors_or_a_format_error(data: bytes) -> None:
    never_raises_other(lambda: parse_sectors(data), RosterFormatError)


# ------------------------------------------------------------------ configuration

CONFIG = (
    '[organisation]\nowner = "fr.health.samu690"\ndepartement = "69"\n'
    '[workstation]\nname = "POSTE-1"\nrole = "ARM"\n'
    '[geocoder]\nurl = "https://ban.example/search"\ntimeout = 3\n'
    '[queues]\nlease_s = 120\nrenew_s = 30\nwait_p0 = 60\nschema = "sas_desk"\n'
    "[search]\nper_vendor = 4\nslow_s = 2.0\n"
    '[rosters]\nurls = ["https://cdo.example/69.csv"]\nsync_every_s = 3600\n'
    '[[vendors]]\nname = "A"\nbase_url = "https://a.example/fhir"\ntimeout = 7\n'
)
TOML_NOISE = (
    st.builds(
        "{} = {}".format,
        st.sampled_from(
            ["timeout", "lease_s", "renew_s", "port", "url", "schema", "wait_p1", "role"]
        ),
        st.sampled_from(
            [
                "-1",
                "nan",
                "inf",
                "1e999",
                "99999",
                '"ftp://x"',
                '"a\'b"',
                "true",
                "[1,[2]]",
                "{a = 1}",
                "2026-12-07T10:00:00",
                '"\\u0000"',
                "0x10",
            ]
        ),
    )
    | st.sampled_from(["[serveur]", "[queues]", "[[vendors]]", "[demo]", "[identity]"])
    | st.text(max_size=30)
)


@bounded
@given(mutated_lines(CONFIG, TOML_NOISE))
def test_config_gives_a_config_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "config.toml"
        path.write_bytes(text.encode("utf-8", "surrogatepass"))
        cfg = never_raises_other(lambda: load_config(path, Path(folder)), ConfigError)
        assert cfg is None or isinstance(cfg, Config)


# ------------------------------------------------------------------ pasted positions, AML SMS

NUMBER = st.from_regex(r"[-+]?\d{1,4}([.,]\d{0,8})?", fullmatch=True) | st.sampled_from(
    ["45.764", "4,836", "1e308", "9" * 400, "nan", "-0"]
)


@bounded
@given(
    st.text(max_size=80)
    | st.builds("{}, {}".format, NUMBER, NUMBER)
    | st.builds("N {} E {}".format, NUMBER, NUMBER)
    | st.builds("#AML lt={};lg={};rd={};top=20261207".format, NUMBER, NUMBER, NUMBER)
    | st.builds("45°{}'{}\" N 4°{}'{}\" E".format, NUMBER, NUMBER, NUMBER, NUMBER)
)
def test_pasted_positions_and_aml_sms_give_a_position_none_or_a_validation_error(
    text: str,
) -> None:
    never_raises_other(lambda: parse_position(text), ValidationError)
