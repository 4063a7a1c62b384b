"""Roster imports that succeed (every documented variant of the three
formats), the store's versions and queries, the status banner, the demo."""

from __future__ import annotations

import json
import sqlite3
from datetime import date, datetime, timedelta
from pathlib import Path

import pytest

from sas_desk.models.roster import PARIS
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.roster import (
    RosterImportError,
    RosterService,
    export_csv,
    parse_roster,
)
from sas_desk.services.roster.demo import demo_roster
from sas_desk.services.roster.store import KEEP_VERSIONS
from tests.helpers.rosters import JSON_ROSTER

HEADER = "date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;commentaire"
NOW = datetime(2026, 12, 30, 10, 0, tzinfo=PARIS)


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=PARIS)


@pytest.fixture(scope="module")
def communes() -> CommuneIndex:
    return CommuneIndex.load()


@pytest.fixture
def service(communes: CommuneIndex, tmp_path: Path) -> RosterService:
    return RosterService(tmp_path / "rosters.sqlite", communes=communes, now=lambda: NOW)


def test_csv_variants_comma_cp1252_hhmm_iso_and_midnight(service: RosterService) -> None:
    text = (
        HEADER.replace(";", ",")
        + "\n"
        + "2027-01-03,9h,12h30,69-C,69123|69266,Lefèvre,Éloïse,10101010101,"
        '"3 rue Pasteur, bât. B",69007,Lyon,04.65.71.12.34,"=pas une formule"\n'
        + "02/01/2027,20:00,08:00+1,69-C,69123,Nuit,Jean,,,,,+33 4 65 71 00 02,\n"
    )
    report = service.import_bytes(text.encode("cp1252"), "gardes.csv")
    assert (report.kind, report.encoding, report.entries) == ("csv", "windows-1252", 2)
    found = service.on_call("Lyon", at("2027-01-03T12:15"))
    assert [(e.family, e.given, e.rpps, e.phone) for e in found] == [
        ("Lefèvre", "Éloïse", "10101010101", "+33465711234")
    ]
    assert found[0].full_address() == "3 rue Pasteur, bât. B, 69007 Lyon"
    assert found[0].notes == "=pas une formule"  # kept as text
    assert found[0].end == at("2027-01-03T12:30")
    night = service.on_call("69123", at("2027-01-03T07:30"))
    assert [e.family for e in night] == ["Nuit"]
    assert night[0].end - night[0].start == timedelta(hours=12)
    assert service.on_call("69266", at("2027-01-03T07:30")) == []  # not in the night's communes


def test_utf8_bom_and_crlf(service: RosterService) -> None:
    text = HEADER + "\r\n03/01/2027;09:00;12:00;69-C;69123;Noël;;;;;;04 65 71 12 34;\r\n"
    report = service.import_bytes(b"\xef\xbb\xbf" + text.encode(), "g.csv")
    assert report.encoding == "utf-8-sig"
    assert service.on_call("69123", at("2027-01-03T09:00"))[0].family == "Noël"


ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//test//FR\r\n"
    "BEGIN:VTIMEZONE\r\nTZID:Europe/Paris\r\nBEGIN:STANDARD\r\nDTSTART:19701025T030000\r\n"
    "TZOFFSETFROM:+0200\r\nTZOFFSETTO:+0100\r\nEND:STANDARD\r\nEND:VTIMEZONE\r\n"
    "BEGIN:VEVENT\r\nUID:1\r\nDTSTART;TZID=Europe/Paris:20270103T090000\r\n"
    "DTEND;TZID=Europe/Paris:20270103T120000\r\nX-SAS-SECTEUR:69-C\r\n"
    "X-SAS-SECTEUR-NOM:Lyon centre\r\nX-SAS-COMMUNES:69123|69266\r\nX-SAS-NOM:Martin\r\n"
    "X-SAS-PRENOM:Claire\r\nX-SAS-RPPS:10101010101\r\nX-SAS-TELEPHONE:04 65 71 12 34\r\n"
    "LOCATION:12 rue Pasteur\\, 69003 Lyon\r\nDESCRIPTION:Sonner au 2e\\, porte gauche\\nParking\r\n"
    "  derrière\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:2\r\nDTSTART:20270103T130000Z\r\nDURATION:PT4H\r\n"
    "X-SAS-SECTEUR:69-C\r\nX-SAS-COMMUNES:69123\r\nX-SAS-NOM:Durand\r\n"
    "X-SAS-TELEPHONE:+33465711235\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nUID:3\r\nSTATUS:CANCELLED\r\nDTSTART:20270110T090000\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def test_icalendar_conventions(service: RosterService) -> None:
    report = service.import_bytes(ICS.encode(), "gardes.ics")
    assert (report.kind, report.entries) == ("ics", 2)
    assert [str(s) for s in report.skipped] == [
        "VEVENT n° 3 (ligne 36) : garde annulée (STATUS:CANCELLED) : ignorée"
    ]
    morning = service.on_call("69266", at("2027-01-03T11:59"))[0]
    assert (morning.sector_name, morning.postcode, morning.city) == ("Lyon centre", "69003", "Lyon")
    assert morning.notes == "Sonner au 2e, porte gauche\nParking derrière"
    afternoon = service.on_call("69123", at("2027-01-03T14:00"))[0]
    assert afternoon.family == "Durand"
    assert afternoon.start == at("2027-01-03T14:00")  # 13:00 UTC
    assert afternoon.end == at("2027-01-03T18:00")


def test_json_schema_with_sectors(service: RosterService) -> None:
    doc = JSON_ROSTER
    report = service.import_bytes(json.dumps(doc).encode(), "g.json")
    assert report.entries == 2 and report.sectors == 1
    assert service.on_call("69266", at("2027-01-04T07:00"))[0].family == "Nuit"
    assert service.on_call_sector("69-C", at("2027-01-03T10:00"))[0].sector_name == "Lyon centre"


def test_a_commune_list_and_one_code_with_a_bar_are_not_confused(
    service: RosterService,
) -> None:
    def entry(day: str, communes: list[str]) -> dict[str, object]:
        return {
            "date": day,
            "start": "09:00",
            "end": "12:00",
            "sector": "69-C",
            "communes": communes,
            "family": "Martin",
            "phone": "04 65 71 12 34",
        }

    doc = {
        "format": "sas-desk-roster",
        "version": 1,
        "entries": [entry("2027-01-03", ["69123", "69266"]), entry("2027-01-10", ["69123|69266"])],
    }
    with pytest.raises(RosterImportError) as err:
        service.import_bytes(json.dumps(doc).encode(), "g.json")
    [issue] = err.value.issues
    assert issue.where == "entrée n° 2" and "69123|69266" in str(issue)


def test_sectors_file_fills_communes_and_names(service: RosterService, tmp_path: Path) -> None:
    sectors = tmp_path / "secteurs.csv"
    sectors.write_text("secteur;nom;communes\n69-C;Lyon centre;69123|69266\n", encoding="utf-8")
    roster = tmp_path / "g.csv"
    roster.write_text(
        HEADER + "\n03/01/2027;09:00;12:00;69-C;;Martin;;;;;;04 65 71 12 34;\n"
        "03/01/2027;09:00;12:00;69-X;;Petit;;;;;;04 65 71 12 35;\n",
        encoding="utf-8",
    )
    with pytest.raises(RosterImportError) as caught:
        service.import_file(roster, sectors_path=sectors)
    assert [str(i) for i in caught.value.issues] == [
        "ligne 3, colonne secteur : secteur inconnu « 69-X » (absent du fichier des secteurs)"
    ]
    roster.write_text(HEADER + "\n03/01/2027;09:00;12:00;69-C;;Martin;;;;;;04 65 71 12 34;\n")
    report = service.import_file(roster, sectors_path=sectors)
    found = service.on_call("Villeurbanne", at("2027-01-03T10:00"))
    assert [(e.family, e.sector_name) for e in found] == [("Martin", "Lyon centre")]
    # the sector's Sundays and holidays without a dentist: only that one Sunday is covered
    assert report.gaps == ()  # the roster spans one day


def test_duplicates_dropped_and_gaps_reported(service: RosterService) -> None:
    rows = [
        "03/01/2027;09:00;12:00;69-C;69123;Martin;;;;;;04 65 71 12 34;",
        "03/01/2027;09:00;12:00;69-C;69123;MARTIN;;;;;;04 65 71 12 34;",
        "03/01/2027;09:00;12:00;69-N;69266;Roux;;;;;;04 65 71 12 36;",
        "17/01/2027;09:00;12:00;69-C;69123;Martin;;;;;;04 65 71 12 34;",
    ]
    report = service.import_bytes(("\n".join([HEADER, *rows]) + "\n").encode(), "g.csv")
    assert report.entries == 3
    assert [d.message_fr() for d in report.duplicates] == [
        "ligne 3 : doublon de ligne 2 (secteur 69-C, 03/01/2027 09:00–12:00) : ignoré"
    ]
    assert [g.message_fr() for g in report.gaps] == [
        "10/01/2027 (dimanche) : aucun dentiste de garde dans le secteur 69-C",
        "10/01/2027 (dimanche) : aucun dentiste de garde dans le secteur 69-N",
        "17/01/2027 (dimanche) : aucun dentiste de garde dans le secteur 69-N",
    ]
    lines = report.lines_fr()
    assert lines[1:3] == ["Chevauchements : 0", "Doublons ignorés : 1"]
    assert "Dimanches et jours fériés sans dentiste de garde : 3" in lines


def test_export_neutralises_formula_cells(service: RosterService) -> None:
    rows = [
        '03/01/2027;09:00;12:00;69-C;69123;=HYPERLINK("http://x");@cmd;;+33 rue;;-Lyon;'
        "04 65 71 12 34;-5 min d'attente",
    ]
    service.import_bytes(("\n".join([HEADER, *rows]) + "\n").encode(), "g.csv")
    exported = export_csv(service.store.entries())
    line = exported.splitlines()[1]
    assert line == (
        '03/01/2027;09:00;12:00;69-C;69123;"\'=HYPERLINK(""http://x"")";\'@cmd;;\'+33 rue;;\'-Lyon;'
        "04 65 71 12 34;'-5 min d'attente"
    )
    # and it reads back (the quote stays: the export is for spreadsheets)
    again = parse_roster(exported.encode(), "export.csv")
    assert again.entries[0].family == '\'=HYPERLINK("http://x")'


def test_versions_history_in_force_per_departement_and_pruning(service: RosterService) -> None:
    def roster(dep_code: str, family: str) -> bytes:
        return (
            HEADER + f"\n03/01/2027;09:00;12:00;S1;{dep_code};{family};;;;;;04 65 71 12 34;\n"
        ).encode()

    first = service.import_bytes(roster("69123", "Un"), "a.csv").version
    service.import_bytes(roster("38185", "Isere"), "b.csv")
    third = service.import_bytes(roster("69123", "Trois"), "c.csv").version
    in_force = service.store.in_force()
    assert in_force["69"].id == third.id and in_force["38"].source == "b.csv"
    assert [e.family for e in service.on_call("69123", at("2027-01-03T10:00"))] == ["Trois"]
    assert [e.family for e in service.on_call("Grenoble", at("2027-01-03T10:00"))] == ["Isere"]
    for n in range(KEEP_VERSIONS):
        service.import_bytes(roster("69123", f"V{n}"), f"v{n}.csv")
    assert len(service.store.versions()) == 3 + KEEP_VERSIONS  # every import stays in history
    assert service.store.count_entries(first.id) == 0  # its entries were pruned
    assert service.store.count_entries(in_force["38"].id) == 1  # still in force for 38


def test_search_and_next_period(service: RosterService) -> None:
    rows = [
        "03/01/2027;09:00;12:00;69-C;69123;Lefèvre;Éloïse;;;;;04 65 71 12 34;",
        "03/01/2027;14:00;18:00;69-C;69123;Dupré;Noël;;;;;04 65 71 12 35;",
        "10/01/2027;09:00;12:00;69-C;69123;Lefevre;Eloise;;;;;04 65 71 12 34;",
    ]
    service.import_bytes(("\n".join([HEADER, *rows]) + "\n").encode(), "g.csv")
    found = service.search_dentist("eloise LEFE")
    assert [(e.day, e.family) for e in found] == [
        (date(2027, 1, 3), "Lefèvre"),
        (date(2027, 1, 10), "Lefevre"),
    ]
    assert service.search_dentist("noel")[0].family == "Dupré"
    assert service.search_dentist("zzz") == []
    nxt = service.next_on_call("Lyon", at("2027-01-03T12:00"))
    assert [(e.family, e.start) for e in nxt] == [("Dupré", at("2027-01-03T14:00"))]
    assert [e.family for e in service.next_on_call_sector("69-C", at("2027-01-03T15:00"))] == [
        "Lefevre"
    ]
    assert service.on_call("Commune inconnue") == []


def test_status_flags_a_roster_ending_soon(service: RosterService) -> None:
    assert service.status().message_fr == "Aucun tableau de garde dentaire."
    service.import_bytes(
        (HEADER + "\n03/01/2027;09:00;12:00;69-C;69123;M;;;;;;04 65 71 12 34;\n").encode(), "g.csv"
    )
    status = service.status("69")
    assert status.stale and not status.offline
    assert status.message_fr == (
        "Tableau de garde du 30/12/2026 (g.csv). Le tableau de garde se termine le 03/01/2027."
    )


def test_damaged_store_is_moved_aside(communes: CommuneIndex, tmp_path: Path) -> None:
    path = tmp_path / "rosters.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    svc = RosterService(path, communes=communes)
    assert svc.store.is_empty()
    assert "mis de côté" in svc.store.notice_fr
    assert len(list(tmp_path.glob("rosters.sqlite.damaged-*"))) == 1
    assert svc.status().reasons[0] == svc.store.notice_fr
    svc.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA user_version").fetchone()[0] == 1


def test_demo_roster_is_deterministic_and_complete(communes: CommuneIndex) -> None:
    a = demo_roster(communes, date(2026, 12, 1))
    b = demo_roster(communes, date(2026, 12, 1))
    later = demo_roster(communes, date(2027, 1, 1))
    assert a.entries == b.entries
    # the dentist of a day does not depend on the generation date
    day = date(2027, 1, 10)
    assert [e for e in a.entries if e.day == day] == [e for e in later.entries if e.day == day]
    assert {s.code for s in a.sectors} == {
        f"{d}-{p}" for d in ("26", "38", "42", "69") for p in "NCS"
    }
    covered = {c for s in a.sectors for c in s.communes}
    assert covered == {c.insee for c in communes}
    assert all(e.phone.startswith("+3346571") for e in a.entries)
    assert {e.day for e in a.entries} >= {date(2026, 12, 25), date(2027, 5, 6), date(2027, 5, 17)}


def test_load_demo_only_when_empty(service: RosterService) -> None:
    report = service.load_demo_if_empty()
    assert report is not None and report.gaps == () and report.version.origin == "demo"
    assert service.load_demo_if_empty() is None
    assert len(service.on_call("Valence", at("2027-01-03T10:00"))) == 1
    assert service.on_call("Valence", at("2027-01-03T13:00")) == []
