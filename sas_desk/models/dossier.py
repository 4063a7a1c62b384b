"""The Dossier de régulation (call sheet), aligned with Hub Santé RS-EDA
``createCaseHealth``, and its append-only event log.

Pure data: no I/O, no Qt.  Datetimes are timezone-aware.  ``to_dict`` /
``from_dict`` give the journal's JSON form (not the RS-EDA form: that is
``sas_desk.models.rseda``).
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sas_desk.models.codes import codelist
from sas_desk.models.validation import (
    Age,
    ValidationError,
    check_coordinates,
    departement_of,
    normalize_phone,
    validate_insee,
)


class Status(enum.StrEnum):
    DRAFT = "DRAFT"  # being filled in by the ARM
    TRANSMITTED = "TRANSMITTED"  # handed to a regulator queue
    CLOSED = "CLOSED"
    ABANDONED = "ABANDONED"  # sheet discarded by the ARM (kept in the log)

    @property
    def label(self) -> str:
        return {
            "DRAFT": "En cours de saisie",
            "TRANSMITTED": "Transmis",
            "CLOSED": "Clôturé",
            "ABANDONED": "Abandonné",
        }[self.value]


class Branch(enum.StrEnum):
    """Where the ARM sends the case: emergency, general medicine, dental."""

    AMU = "AMU"
    SNP = "SNP"
    DENT = "DENT"

    @property
    def label(self) -> str:
        return {"AMU": "AMU — urgence", "SNP": "SNP — médecine générale", "DENT": "Dentaire"}[
            self.value
        ]

    @property
    def perimeter(self) -> str:
        """RS-EDA ``perimeter`` (filière): dental regulation sits in the SNP filière."""
        return "AMU" if self is Branch.AMU else "SNP"

    @property
    def attribution(self) -> str:
        return {"AMU": "DRM.MRU.MU", "SNP": "DRM.MRL.MG", "DENT": "DRM.SPE.DENT"}[self.value]

    @classmethod
    def from_attribution(cls, attribution: str | None, perimeter: str | None) -> Branch | None:
        if attribution:
            if attribution.startswith("DRM.SPE.DENT"):
                return cls.DENT
            if attribution.startswith("DRM.MRL"):
                return cls.SNP
            if attribution.startswith("DRM.MRU"):
                return cls.AMU
        if perimeter == "SNP":
            return cls.SNP
        if perimeter == "AMU":
            return cls.AMU
        return None


PRIORITIES = ("P0", "P1", "P2", "P3", "NR")
URGENT = ("P0", "P1")  # may leave without a callback number, once confirmed


class ConfirmationNeeded(ValidationError):
    """The dossier may be transmitted, but only once the operator confirmed
    what is unusual about it.  ``questions``: key → French text; the keys are
    given back to :func:`transmit` as ``confirmed``."""

    def __init__(self, questions: dict[str, str]) -> None:
        super().__init__(" ".join(questions.values()), next(iter(questions)))
        self.questions = questions


#: the languages offered on the sheet (ISO 639-1, as RS-EDA ``caller.language``
#: carries them), the most heard in French regulation rooms first
CALLER_LANGUAGES: tuple[tuple[str, str], ...] = (
    ("fr", "Français"),
    ("en", "Anglais"),
    ("es", "Espagnol"),
    ("ar", "Arabe"),
    ("pt", "Portugais"),
    ("it", "Italien"),
    ("de", "Allemand"),
    ("tr", "Turc"),
    ("ro", "Roumain"),
    ("ru", "Russe"),
    ("uk", "Ukrainien"),
    ("pl", "Polonais"),
    ("zh", "Chinois"),
    ("nl", "Néerlandais"),
    ("ht", "Créole haïtien"),
)


@dataclass
class Caller:
    callback: str = ""  # E.164 once valid; the raw text while not
    caller_type: str = ""  # typeAppelant code
    channel: str = "PERSONNE"
    name: str = ""  # sensitive: never logged
    language: str = "fr"
    communication: str = ""
    freetext: str = ""
    # RS-EDA keeps the number used to call in and the one to call back apart
    contact_detail: str = ""


@dataclass
class Patient:
    patient_id: str = ""
    age: str = ""  # ISO-8601 single-unit duration ("P65Y") once valid
    birth_date: str = ""  # YYYY-MM-DD
    sex: str = ""  # M F O UN
    last_name: str = ""  # sensitive
    first_name: str = ""  # sensitive
    complete_name: str = ""


@dataclass
class Location:
    address: str = ""  # free text as typed / geocoded label
    number: str = ""
    way_name: str = ""
    way_type: str = ""
    city: str = ""
    insee: str = ""
    postcode: str = ""
    lat: float | None = None
    lon: float | None = None
    precision: str = ""  # VILLE RUE ADRESSE EXACTE INCONNUE
    is_aml: bool = False
    radius_m: float | None = None  # uncertainty radius of an AML position
    position_at: datetime | None = None
    floor: str = ""
    access_code: str = ""
    interphone: str = ""
    building: str = ""
    name: str = ""
    freetext: str = ""

    @property
    def has_position(self) -> bool:
        return self.lat is not None and self.lon is not None


@dataclass
class Note:
    at: datetime
    text: str
    role: str = "ARM"  # operator role code (ARM, MEDECIN…)
    medical: bool = True  # medicalNote vs initialAlert.notes
    note_id: str = ""
    operator: str = ""


@dataclass
class Decision:
    at: datetime
    decision_type: str
    role: str = "MEDECIN"
    resource_type: str = ""
    orientation_type: str = ""
    medical_transport: bool | None = None
    freetext: str = ""
    patient_id: str = ""


@dataclass
class Dossier:
    case_id: str
    created_at: datetime
    owner: str
    sender_case_id: str = ""
    received_at: datetime | None = None
    caller: Caller = field(default_factory=Caller)
    patient: Patient = field(default_factory=Patient)
    location: Location = field(default_factory=Location)
    motive_code: str = ""
    motive_label: str = ""
    whats_happen: tuple[str, str] | None = None  # (code, label) Cxx.xx.xx
    location_kind: tuple[str, str] | None = None  # (code, label) Lxx.xx.xx
    origin: str = "15"
    priority: str = "P2"  # the Hub default
    branch: Branch | None = None
    perimeter: str = ""
    attribution: str = ""
    care_level: str = ""
    intervention_type: str = ""
    notes: list[Note] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    status: Status = Status.DRAFT
    transmitted_at: datetime | None = None
    revision: int = 0  # bumped on every edit; the journal keeps the latest
    # raw text of every input of the sheet as typed (even when not valid yet),
    # so that a crash gives back exactly what was on screen
    inputs: dict[str, str] = field(default_factory=dict)
    # local dental sub-classification (code list "dental_reason"); no national list exists
    dental_reason: str = ""

    # ------------------------------------------------------------------ checks
    def problems(self) -> dict[str, str]:
        """Field → French message for what prevents transmission."""
        out: dict[str, str] = {}
        if not self.caller.callback.strip():
            if self.priority not in URGENT:  # P0/P1: asked for confirmation instead
                out["callback"] = "Numéro de rappel manquant."
        else:
            try:
                normalize_phone(self.caller.callback)
            except ValidationError as exc:
                out["callback"] = exc.message
        loc = self.location
        if not (loc.address.strip() or loc.insee or loc.has_position):
            out["location"] = "Localisation manquante : adresse, commune ou coordonnées."
        if loc.insee:
            try:
                validate_insee(loc.insee)
            except ValidationError as exc:
                out["location"] = exc.message
        if loc.lat is not None and loc.lon is not None:
            try:
                check_coordinates(loc.lat, loc.lon)
            except ValidationError as exc:
                out["location"] = exc.message
        if not self.motive_code:
            out["motive"] = "Motif de recours manquant."
        elif self.motive_code not in codelist("motive") and not self.motive_label:
            out["motive"] = f"Motif « {self.motive_code} » inconnu."
        if self.patient.age:
            try:
                Age.from_iso(self.patient.age)
            except ValidationError as exc:
                out["age"] = exc.message
        if self.priority not in PRIORITIES:
            out["priority"] = "Priorité manquante (P0, P1, P2, P3 ou NR)."
        if self.branch is None:
            out["branch"] = "Filière manquante : AMU, SNP ou dentaire."
        elif self.branch is Branch.DENT and not self.dental_reason:
            out["dental_reason"] = "Motif dentaire manquant."
        return out

    def confirmations(self, departement: str = "") -> dict[str, str]:
        """Key → French question for what may leave only once the operator
        confirmed it (the answer is recorded with the transmission):
        a place nobody located, a place outside the centre's ``departement``,
        a P0/P1 with no callback number."""
        out: dict[str, str] = {}
        loc = self.location
        if not (loc.insee or loc.has_position):
            if loc.address.strip():
                out["unlocated"] = (
                    "Lieu non localisé (ni commune ni coordonnées) : "
                    "le régulateur ne saura pas où envoyer."
                )
        elif departement and loc.insee and departement_of(loc.insee) != departement:
            out["out_of_territory"] = (
                f"Lieu hors du territoire du centre : département {departement_of(loc.insee)}, "
                f"le centre couvre le {departement}."
            )
        elif departement and not loc.insee:
            out["out_of_territory"] = (
                "Position hors des communes du territoire du centre (aucune commune connue)."
            )
        if self.priority in URGENT and not self.caller.callback.strip():
            out["no_callback"] = (
                f"{self.priority} sans numéro de rappel : personne ne pourra rappeler "
                "si l'appel coupe."
            )
        return out

    def warnings(self) -> dict[str, str]:
        """Field → French advice that does not block transmission."""
        out: dict[str, str] = {}
        if self.branch is Branch.DENT and self.dental_reason == "DENT.CELLULITE":
            out["dental_reason"] = (
                "Gonflement avec fièvre ou gêne respiratoire : signe de gravité, "
                "à transmettre plutôt à un médecin (AMU)."
            )
        if self.priority == "P0" and self.branch is not None and self.branch is not Branch.AMU:
            out["branch"] = "Priorité P0 (urgence vitale) hors filière AMU : vérifiez la filière."
        return out

    @property
    def has_content(self) -> bool:
        """Something was typed in (a field or a note)."""
        return bool(self.notes) or any(v.strip() for v in self.inputs.values())

    @property
    def is_blank(self) -> bool:
        """A draft nobody typed anything in (a sheet opened ahead of a call)."""
        return self.status is Status.DRAFT and not self.has_content

    @property
    def is_open(self) -> bool:
        return self.status is Status.DRAFT

    @property
    def is_dental(self) -> bool:
        """Attributed to the dental regulator (``DRM.SPE.DENT``) or triaged to
        the dental branch."""
        return self.attribution.startswith("DRM.SPE.DENT") or self.branch == Branch.DENT

    @property
    def commune_label(self) -> str:
        return self.location.city or self.location.insee

    # ---------------------------------------------------------------- (de)serialise
    def to_dict(self) -> dict[str, Any]:
        encoded: dict[str, Any] = _encode(dataclasses.asdict(self))
        return encoded

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Dossier:
        d = dict(data)
        d["created_at"] = _dt(d["created_at"])
        d["received_at"] = _dt(d.get("received_at"))
        d["transmitted_at"] = _dt(d.get("transmitted_at"))
        d["caller"] = Caller(**d.get("caller", {}))
        d["patient"] = Patient(**d.get("patient", {}))
        loc = dict(d.get("location", {}))
        loc["position_at"] = _dt(loc.get("position_at"))
        d["location"] = Location(**loc)
        d["notes"] = [Note(**{**n, "at": _dt(n["at"])}) for n in d.get("notes", [])]
        d["decisions"] = [Decision(**{**x, "at": _dt(x["at"])}) for x in d.get("decisions", [])]
        d["status"] = Status(d.get("status", "DRAFT"))
        d["branch"] = Branch(d["branch"]) if d.get("branch") else None
        for key in ("whats_happen", "location_kind"):
            d[key] = tuple(d[key]) if d.get(key) else None
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def _dt(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        return value
    return datetime.fromisoformat(str(value))


def _encode(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_encode(v) for v in value]
    return value


# ---------------------------------------------------------------------------- events


class EventKind(enum.StrEnum):
    CREATED = "CREATED"
    RESUMED = "RESUMED"  # reopened after a crash or restart
    NOTE_ADDED = "NOTE_ADDED"
    TRANSMITTED = "TRANSMITTED"
    ABANDONED = "ABANDONED"
    IMPORTED = "IMPORTED"  # from an RS-EDA message
    IMPORT_CONFLICT = "IMPORT_CONFLICT"  # a message for a known case: kept apart, nothing lost
    IMPORT_RESOLVED = "IMPORT_RESOLVED"  # the operator kept one version; the other abandoned
    ENQUEUED = "ENQUEUED"
    CLAIMED = "CLAIMED"
    RELEASED = "RELEASED"
    TRANSFERRED = "TRANSFERRED"
    DECIDED = "DECIDED"
    BOOKING_REQUESTED = "BOOKING_REQUESTED"
    HANDED_BACK = "HANDED_BACK"
    CLOSED = "CLOSED"
    MEDICAL_NOTE = "MEDICAL_NOTE"
    REASSIGNED = "REASSIGNED"
    LEASE_EXPIRED = "LEASE_EXPIRED"
    ORIENTED = "ORIENTED"  # a slot booked at a vendor (OSNP orientation)
    DENTAL_ORIENTED = "DENTAL_ORIENTED"  # the dental regulator's orientation
    UPDATED = "UPDATED"  # the ARM added information after transmission
    # Hub Santé (services/hub): what partners and the SAS platform send or answer
    HUB_UPDATE = "HUB_UPDATE"  # an RS-EDA-MAJ applied
    HUB_SHARED = "HUB_SHARED"  # sent to a partner (RS-EDA / RS-EDA-MAJ)
    HUB_ACK = "HUB_ACK"  # the partner's RC-REF about what we sent
    HUB_ERROR = "HUB_ERROR"  # an RS-ERROR about what we sent
    HUB_ALARM = "HUB_ALARM"  # not acknowledged before its expiry: phone the partner
    APPOINTMENT = "APPOINTMENT"  # a SAS appointment (RS-SAS-RDV) attached or changed

    @property
    def label(self) -> str:
        return {
            "CREATED": "Dossier créé",
            "RESUMED": "Saisie reprise",
            "NOTE_ADDED": "Note ajoutée",
            "TRANSMITTED": "Dossier transmis",
            "ABANDONED": "Fiche abandonnée",
            "IMPORTED": "Dossier importé (RS-EDA)",
            "IMPORT_CONFLICT": "Import en conflit : version reçue conservée à part",
            "IMPORT_RESOLVED": "Conflit d'import tranché",
            "ENQUEUED": "Mis en file",
            "CLAIMED": "Pris en charge",
            "RELEASED": "Remis en file",
            "TRANSFERRED": "Transféré",
            "DECIDED": "Décision médicale",
            "BOOKING_REQUESTED": "Rendez-vous demandé (OSNP)",
            "HANDED_BACK": "Rendu à l'ARM",
            "CLOSED": "Dossier clôturé",
            "MEDICAL_NOTE": "Note médicale",
            "REASSIGNED": "Réattribué par le superviseur",
            "LEASE_EXPIRED": "Prise en charge expirée (poste muet)",
            "ORIENTED": "Orientation : rendez-vous pris",
            "DENTAL_ORIENTED": "Orientation dentaire",
            "UPDATED": "Complément de l'ARM",
            "HUB_UPDATE": "Mise à jour reçue du partenaire (Hub Santé)",
            "HUB_SHARED": "Envoyé au partenaire (Hub Santé)",
            "HUB_ACK": "Accusé de réception du partenaire",
            "HUB_ERROR": "Erreur Hub Santé",
            "HUB_ALARM": "Non reçu par le partenaire : téléphonez",
            "APPOINTMENT": "Rendez-vous SAS",
        }[self.value]


@dataclass(frozen=True)
class Actor:
    """Who did something, from where."""

    role: str  # ARM, OSNP, MRU, MRL, DENT, SUP
    operator: str  # login / display name of the operator (not a patient)
    workstation: str


@dataclass(frozen=True)
class Event:
    dossier_id: str
    at: datetime
    kind: EventKind
    actor: Actor
    data: dict[str, Any] = field(default_factory=dict)
    seq: int | None = None  # assigned by the store
    # the queue store's log (hash chain, see services/queues/machine.py):
    op_id: str = ""  # the operation that made it ("" for a lease expiry)
    prev_hash: str = ""  # hash of the previous event of the dossier ("" for the first)
    hash: str = ""

    def to_row(self) -> dict[str, Any]:
        return {
            "dossier_id": self.dossier_id,
            "at": self.at.isoformat(),
            "kind": self.kind.value,
            "role": self.actor.role,
            "operator": self.actor.operator,
            "workstation": self.actor.workstation,
            "data": _encode(self.data),
        }


# ---------------------------------------------------------------------------- operations


def transmit(
    dossier: Dossier,
    at: datetime,
    actor: Actor,
    *,
    departement: str = "",
    confirmed: Collection[str] = (),
) -> Event:
    """Hand the dossier over: perimeter and attribution follow the branch.

    Raises :class:`ValidationError` listing what is missing, or
    :class:`ConfirmationNeeded` for what the operator has not ``confirmed``
    yet (see :meth:`Dossier.confirmations`, ``departement`` being the
    centre's); the dossier is left unchanged in both cases.  What was
    confirmed is recorded in the event.
    """
    if dossier.status is not Status.DRAFT:
        raise ValidationError(_NOT_OPEN[dossier.status], "status")
    problems = dossier.problems()
    if problems:
        raise ValidationError(" ".join(problems.values()), next(iter(problems)))
    questions = dossier.confirmations(departement)
    pending = {k: v for k, v in questions.items() if k not in confirmed}
    if pending:
        raise ConfirmationNeeded(pending)
    assert dossier.branch is not None
    dossier.perimeter = dossier.branch.perimeter
    dossier.attribution = dossier.branch.attribution
    callback = dossier.caller.callback.strip()
    dossier.caller.callback = normalize_phone(callback) if callback else ""
    dossier.status = Status.TRANSMITTED
    dossier.transmitted_at = at
    dossier.revision += 1
    return Event(
        dossier.case_id,
        at,
        EventKind.TRANSMITTED,
        actor,
        {
            "branch": dossier.branch.value,
            "perimeter": dossier.perimeter,
            "attribution": dossier.attribution,
            "priority": dossier.priority,
            "motive": dossier.motive_code,
        }
        | ({"confirmed": questions} if questions else {}),
    )


_NOT_OPEN = {
    Status.TRANSMITTED: "Ce dossier a déjà été transmis.",
    Status.CLOSED: "Ce dossier est clôturé : il ne peut plus être transmis.",
    Status.ABANDONED: "Cette fiche a été abandonnée : elle ne peut plus être transmise.",
}

# Who answers the 15 and fills call sheets: the ARM's seat.  A supervisor
# who takes a call switches to it (Ctrl+Maj+R), so the log says who did what.
CALL_TAKING_ROLES = frozenset({"ARM"})


def check_may_take_calls(role: str) -> None:
    """Raises :class:`ValidationError` (French) for a role that does not take calls."""
    if role not in CALL_TAKING_ROLES:
        raise ValidationError(
            "Nouvel appel : la prise d'appel se fait au poste ARM (changer de rôle : Ctrl+Maj+R).",
            "role",
        )


# Workstation role (config.ROLES) -> operator role of a note.  The room
# supervisor is an ARM, not a physician: their notes must not read "MEDECIN".
_NOTE_ROLES = {
    "ARM": "ARM",
    "OSNP": "ARM",
    "SUP": "ARM",
    "MRU": "MEDECIN",
    "MRL": "MEDECIN",
    "DENT": "MEDECIN",
}


def add_note(
    dossier: Dossier, text: str, at: datetime, actor: Actor, *, medical: bool = True
) -> Event:
    clean = text.strip()
    if not clean:
        raise ValidationError("Note vide.", "note")
    role = _NOTE_ROLES.get(actor.role, "INCONNU")
    note_id = f"{dossier.owner}.medicalNote.{dossier.sender_case_id or dossier.case_id.rsplit('.', 1)[-1]}-{len(dossier.notes) + 1}"
    dossier.notes.append(
        Note(
            at=at, text=clean, role=role, medical=medical, note_id=note_id, operator=actor.operator
        )
    )
    dossier.revision += 1
    return Event(
        dossier.case_id, at, EventKind.NOTE_ADDED, actor, {"note_id": note_id, "role": role}
    )


# decision types that send someone: the form must say which resource
_NEEDS_RESOURCE = frozenset({"INTER", "ORIENT"})


def decision_problems(
    care_level: str, decision_type: str, resource_type: str = ""
) -> dict[str, str]:
    """Field → French message for what a regulator's medical decision lacks.

    A decision states the care level (R1–R4) and its type; nothing is taken
    by default.  An intervention or an orientation names its resource."""
    out: dict[str, str] = {}
    if not care_level:
        out["care_level"] = "Niveau de soins manquant (R1 à R4)."
    elif care_level not in codelist("care_level"):
        out["care_level"] = f"Niveau de soins « {care_level} » invalide (R1 à R4)."
    if not decision_type:
        out["decision_type"] = "Type de décision manquant."
    elif decision_type not in codelist("decision_type"):
        out["decision_type"] = f"Type de décision inconnu : « {decision_type} »."
    elif decision_type in _NEEDS_RESOURCE and not resource_type:
        out["resource_type"] = "Une intervention ou une orientation précise la ressource."
    return out


def new_case_ids(
    owner: str, departement: str, samu_letter: str, at: datetime, sequence: int
) -> tuple[str, str]:
    """Case id in the Hub format: ``{owner}.{senderCaseId}`` where the local
    number follows the DSF layout DRFR15 + département + SAMU letter + YY +
    day of year + 5-digit daily sequence (``DRFR1569A2433000012``)."""
    local = f"DRFR15{departement}{samu_letter}{at:%y}{at.timetuple().tm_yday:03d}{sequence:05d}"
    return f"{owner}.{local}", local
