"""The malformed roster corpus (``tests/fixtures/rosters``, written by its
``make_corpus.py``): each file is refused with its exact French message(s),
every problem listed, and the roster in force before is left intact."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from sas_desk.models.roster import PARIS
from sas_desk.services.geo.territory import CommuneIndex
from sas_desk.services.roster import RosterImportError, RosterService

CORPUS = Path(__file__).resolve().parents[1] / "fixtures" / "rosters"
PREVIOUS = (
    "date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;"
    "commentaire\n"
    "03/01/2027;09:00;12:00;69-C;69123|69266;Ancien;Paul;;1 rue Neuve;69001;Lyon;"
    "04 65 71 00 01;\n"
    "10/01/2027;09:00;12:00;69-C;69123|69266;Ancien;Paul;;1 rue Neuve;69001;Lyon;"
    "04 65 71 00 01;\n"
)
SUNDAY_10H = datetime(2027, 1, 3, 10, 0, tzinfo=PARIS)

EXPECTED: dict[str, list[str]] = {
    "bad_phone.csv": [
        "ligne 2, colonne telephone : numéro invalide « 04 65 71 » (6 chiffres, un numéro français en compte 10 (0X XX XX XX XX))"
    ],
    "bad_postcode.csv": [
        "ligne 2, colonne code_postal : code postal invalide « 6900 » (5 chiffres)"
    ],
    "bad_rpps.csv": ["ligne 2, colonne rpps : numéro RPPS invalide « 1234 » (11 chiffres)"],
    "binary_junk.csv": [
        "fichier : contenu binaire (octet nul à la position 0) : ce n'est pas un fichier texte"
    ],
    "control_character.csv": ["ligne 2 : caractère de contrôle 0x07 : fichier binaire ou corrompu"],
    "dst_missing_hour.csv": [
        "ligne 2, colonne debut : heure inexistante le 28/03/2027 (02:30, passage à l'heure d'été)"
    ],
    "empty.csv": ["fichier : vide : aucun en-tête ni aucune ligne"],
    "encoding_bom_then_latin1.csv": [
        "fichier : marqué UTF-8 (BOM) mais octet 0xe8 invalide à la position 142"
    ],
    "encoding_unknown.csv": [
        "fichier : ni UTF-8 ni Windows-1252 (octet 0x81 à la position 99) : fichier binaire ou encodage inconnu"
    ],
    "encoding_utf16.csv": [
        "fichier : encodage UTF-16 non pris en charge : enregistrez en « CSV UTF-8 »"
    ],
    "end_before_start.csv": [
        "ligne 2, colonne fin : fin (09:00) avant ou égale au début (12:00) : pour une garde qui passe minuit, écrivez « 09:00+1 »"
    ],
    "excel_saved_as_csv.csv": [
        "fichier : format non pris en charge (classeur Excel/LibreOffice ou archive ZIP : enregistrez-le au format CSV)"
    ],
    "extra_column.csv": [
        "ligne 1 (en-tête) : colonne inconnue « email » (attendues : date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;commentaire)"
    ],
    "formula_at.csv": [
        "ligne 2, colonne telephone : formule de tableur refusée (« @SUM(A1:A2) ») : une valeur est attendue"
    ],
    "formula_equals.csv": [
        "ligne 2, colonne date : formule de tableur refusée (« =TODAY() ») : une valeur est attendue"
    ],
    "formula_minus.csv": ["ligne 2, colonne rpps : numéro RPPS invalide « -1+1 » (11 chiffres)"],
    "formula_plus.csv": [
        "ligne 2, colonne debut : heure illisible « +9:00 » (attendu HH:MM ou HHhMM)"
    ],
    "header_only.csv": ["fichier : aucune garde dans le fichier"],
    "ics_all_day.ics": [
        "VEVENT n° 1 (ligne 4), propriété DTSTART : journée entière (VALUE=DATE) : une garde a une heure de début et une heure de fin"
    ],
    "ics_bad_phone_folded.ics": [
        "VEVENT n° 1 (ligne 4), propriété X-SAS-TELEPHONE : numéro invalide « 04 6571 12 » (8 chiffres, un numéro français en compte 10 (0X XX XX XX XX))"
    ],
    "ics_foreign_timezone.ics": [
        "VEVENT n° 1 (ligne 4), propriété DTSTART : fuseau « America/New_York » non pris en charge (Europe/Paris ou UTC)"
    ],
    "ics_missing_sector.ics": ["VEVENT n° 1 (ligne 4), propriété X-SAS-SECTEUR : secteur manquant"],
    "ics_not_a_calendar.ics": [
        "ligne 1 : ce n'est pas un calendrier iCalendar (BEGIN:VCALENDAR attendu)"
    ],
    "ics_rrule.ics": [
        "VEVENT n° 1 (ligne 4), propriété RRULE : RRULE non pris en charge : une VEVENT par période de garde"
    ],
    "ics_too_long.ics": [
        "VEVENT n° 1 (ligne 4), propriété DTEND : garde de 120 h : plus de 72 h, date de fin erronée ?"
    ],
    "ics_truncated.ics": ["ligne 13 : calendrier tronqué (END:VCALENDAR manquant)"],
    "impossible_date.csv": ["ligne 2, colonne date : date impossible « 31/02/2027 »"],
    "impossible_time.csv": ["ligne 2, colonne debut : heure impossible « 25:00 »"],
    "invalid_insee.csv": [
        "ligne 2, colonne communes : Code INSEE « 6912 » invalide : 5 caractères (ex. 69123, 2A004)"
    ],
    "json_end_before_start.json": [
        "entrée n° 1, champ end : fin (09:00) avant ou égale au début (12:00) : pour une garde qui passe minuit, écrivez « 09:00+1 »"
    ],
    "json_invalid.json": ["ligne 1 : JSON invalide (valeur attendue, colonne 57)"],
    "json_unknown_field.json": ["entrée n° 1, champ email : champ inconnu"],
    "json_wrong_format.json": [
        "fichier, champ format : « sas-desk-roster » attendu (voir docs/rosters.md)"
    ],
    "json_wrong_type.json": ["entrée n° 1, champ phone : chaîne attendue"],
    "many_errors.csv": [
        "ligne 2, colonne date : date impossible « 32/01/2027 »",
        "ligne 4, colonne telephone : numéro invalide « 12 » (« 12 » est un numéro court : il ne permet pas de rappeler l'appelant)",
        "ligne 5, colonne fin : fin (08:00) avant ou égale au début (09:00) : pour une garde qui passe minuit, écrivez « 08:00+1 »",
        "ligne 5, colonne communes : « 99999 » est un code de pays étranger, pas une commune",
    ],
    "missing_column.csv": ["ligne 1 (en-tête) : colonne(s) manquante(s) : telephone"],
    "missing_name.csv": ["ligne 2, colonne nom : nom du dentiste manquant"],
    "overlap.csv": [
        "ligne 3 : chevauchement avec ligne 2 (secteur 69-C, 03/01/2027 09:00–12:00 et 03/01/2027 11:00–13:00)"
    ],
    "pdf_renamed.csv": [
        "fichier : format non pris en charge (document PDF : un tableau CSV, iCalendar ou JSON est attendu)"
    ],
    "premium_phone.csv": [
        "ligne 2, colonne telephone : numéro invalide « 08 99 12 34 56 » (les numéros en 08 sont des numéros spéciaux : demandez un numéro de rappel direct)"
    ],
    "row_extra_cell.csv": [
        "ligne 2 : 14 cellules au lieu de 13 (séparateur « ; » en trop ou manquant ?)"
    ],
    "row_missing_cell.csv": [
        "ligne 2 : 12 cellules au lieu de 13 (séparateur « ; » en trop ou manquant ?)"
    ],
    "tab_separated.csv": [
        "ligne 1 : en-tête illisible : colonnes séparées par « ; » ou « , » attendues (date;debut;fin;secteur;communes;nom;prenom;rpps;adresse;code_postal;ville;telephone;commentaire)"
    ],
    "two_departements.csv": [
        "ligne 2, colonne communes : communes de plusieurs départements (38, 69) : un tableau de garde est départemental"
    ],
    "unclosed_quote.csv": ["ligne 2 : guillemets mal fermés (unexpected end of data)"],
    "unknown_commune.csv": ["ligne 2, colonne communes : commune inconnue « 69999 » (code INSEE)"],
    "unreadable_date.csv": [
        "ligne 2, colonne date : date illisible « 3 janvier 2027 » (attendu JJ/MM/AAAA ou AAAA-MM-JJ)"
    ],
}


@pytest.fixture(scope="module")
def communes() -> CommuneIndex:
    return CommuneIndex.load()


@pytest.fixture
def service(communes: CommuneIndex, tmp_path: Path) -> RosterService:
    svc = RosterService(tmp_path / "rosters.sqlite", communes=communes)
    svc.import_bytes(PREVIOUS.encode(), "precedent.csv")
    return svc


def assert_previous_intact(svc: RosterService) -> None:
    versions = svc.store.versions()
    assert len(versions) == 1 and versions[0].source == "precedent.csv"
    assert svc.store.in_force()["69"].id == versions[0].id
    assert svc.store.count_entries() == 2
    assert [e.family for e in svc.on_call("69123", SUNDAY_10H)] == ["Ancien"]


def test_the_corpus_is_complete() -> None:
    files = sorted(p.name for p in CORPUS.iterdir() if p.suffix != ".py")
    assert files == sorted(EXPECTED)
    assert len(files) >= 30


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_malformed_file_is_refused_with_its_message(service: RosterService, name: str) -> None:
    with pytest.raises(RosterImportError) as caught:
        service.import_file(CORPUS / name)
    assert [str(issue) for issue in caught.value.issues] == EXPECTED[name]
    assert caught.value.message_fr.startswith(f"{name} : {len(EXPECTED[name])} erreur")
    assert "le tableau précédent reste en vigueur" in caught.value.message_fr
    assert_previous_intact(service)


def test_a_100_mb_file_is_refused_before_reading(service: RosterService, tmp_path: Path) -> None:
    big = tmp_path / "enorme.csv"
    with big.open("wb") as handle:
        handle.truncate(100 * 1024 * 1024)  # sparse: nothing written to disk
    with pytest.raises(RosterImportError) as caught:
        service.import_file(big)
    assert [str(i) for i in caught.value.issues] == [
        "fichier : trop volumineux (100,0 Mo, maximum 20,0 Mo) : "
        "découpez le tableau par département ou par trimestre"
    ]
    assert_previous_intact(service)


def test_the_same_limit_applies_to_bytes(service: RosterService) -> None:
    data = PREVIOUS.encode() * 2
    with pytest.raises(RosterImportError) as caught:
        service.import_bytes(data, "t.csv", max_bytes=len(data) - 1)
    assert str(caught.value.issues[0]).startswith("fichier : trop volumineux")
    assert_previous_intact(service)


def test_a_sectors_file_with_an_unknown_commune_is_refused(
    service: RosterService, tmp_path: Path
) -> None:
    sectors = tmp_path / "secteurs.csv"
    sectors.write_text("secteur;nom;communes\n69-C;Lyon;69123|69998\n", encoding="utf-8")
    with pytest.raises(RosterImportError) as caught:
        service.import_file(CORPUS / "header_only.csv", sectors_path=sectors)
    assert [str(i) for i in caught.value.issues] == [
        "secteur 69-C : commune inconnue « 69998 » (code INSEE)"
    ]
    assert_previous_intact(service)
