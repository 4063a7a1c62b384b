"""What the Hub Santé agent does with each message, without AMQP.

:meth:`HubProcessor.handle` gets the bytes of one delivery and the queue it came
from and returns a :class:`Verdict`: ``ack`` (stored; the caller then sends
``basic.ack``) or not (unreadable: ``basic.nack(requeue=false)``, the hub turns
it into an error 500 for the sender).  The order is always:

1. parse the envelope; unreadable → recorded in ``rejected``, nack;
2. persist it in ``inbound`` keyed by ``distributionID``; a key already done is
   a duplicate or a redelivery: nothing changes, ack;
3. apply it (dossier, appointment, ledger) and queue the answers (RC-REF step
   ``INTEGRE`` for every functional message, RS-ERROR 701/702/704/409 when it
   is refused) in the outbox, then mark it ``done`` — the answers and the
   ``done`` mark are one transaction;
4. ack.

A crash between 2 and 3 leaves the row ``received``: :meth:`recover` applies it
again at start (dossier writes are skipped when the case's log already holds
that ``distributionID``).  Acks (RC-REF) are never acknowledged; errors
(RS-ERROR) update the ledger and the dossier's timeline.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sas_desk.models import hub
from sas_desk.models.appointment import (
    Appointment,
    AppointmentError,
    Change,
    classify,
    parse_appointment,
    timeline_text,
)
from sas_desk.models.dossier import Dossier, EventKind
from sas_desk.models.hub import Envelope, HubMessageError
from sas_desk.models.rseda import from_rseda, to_rseda
from sas_desk.models.rseda_update import build_update, known_from, update_case_id
from sas_desk.models.validation import ValidationError
from sas_desk.services.hub.cases import CaseSink
from sas_desk.services.hub.settings import HubSettings
from sas_desk.services.hub.store import AsyncHubStore, HubStore, Outbound, StoredAppointment

log = logging.getLogger("sas_desk.hub")


@dataclass(frozen=True)
class Verdict:
    ack: bool
    distribution_id: str = ""
    kind: str = ""
    model: str = ""
    outcome: str = ""  # see OUTCOMES
    case_id: str | None = None
    appointment_id: str | None = None
    detail: str = ""
    answers: tuple[str, ...] = ()  # distributionIDs queued in reply

    def record(self) -> dict[str, Any]:
        return {
            "distributionID": self.distribution_id or None,
            "kind": self.kind or None,
            "model": self.model or None,
            "outcome": self.outcome,
            "caseId": self.case_id,
            "appointmentId": self.appointment_id,
            "detail": self.detail or None,
        }


OUTCOMES = {
    "integrated": "intégré",
    "updated": "mis à jour",
    "appointment_created": "rendez-vous créé",
    "appointment_updated": "rendez-vous mis à jour",
    "appointment_unchanged": "rendez-vous inchangé",
    "refused": "refusé (erreur renvoyée)",
    "stored": "conservé (modèle non traité)",
    "acknowledged": "accusé de réception enregistré",
    "error_recorded": "erreur enregistrée",
    "duplicate": "doublon ignoré",
    "unreadable": "illisible (rejeté)",
}


@dataclass
class _Plan:
    """What processing one message decided, written in one transaction."""

    outcome: str
    detail: str = ""
    case_id: str | None = None
    appointment_id: str | None = None
    answers: list[tuple[dict[str, Any], str]] = field(default_factory=list)  # (envelope, model)
    extra: Callable[[HubStore], None] | None = None


class HubProcessor:
    def __init__(
        self,
        settings: HubSettings,
        store: AsyncHubStore,
        cases: CaseSink,
        now: Callable[[], datetime],
    ) -> None:
        self.settings = settings
        self.store = store
        self.cases = cases
        self._now = now
        self._lock = asyncio.Lock()  # one message at a time: idempotency is per key
        self._recovering = False
        self._batch_appointments: dict[str, StoredAppointment] = {}
        self.alarm_listeners: list[Callable[[Outbound], None]] = []

    @property
    def client_id(self) -> str:
        return self.settings.client_id

    # ------------------------------------------------------------------ receiving
    async def handle(self, queue: str, data: bytes) -> Verdict:
        """One delivery (see :meth:`handle_batch`)."""
        return (await self.handle_batch([(queue, data)]))[0]

    async def handle_batch(self, deliveries: list[tuple[str, bytes]]) -> list[Verdict]:
        """Deliveries that arrived together, in order; one verdict each.

        Group commit: one transaction persists them all, the dossier writes are
        flushed once, one transaction records the outcomes and answers — three
        disk syncs for the batch instead of three per message."""
        async with self._lock:
            return await self._handle_batch(deliveries)

    async def _handle_batch(self, deliveries: list[tuple[str, bytes]]) -> list[Verdict]:
        at = self._now().isoformat()
        verdicts: list[Verdict | None] = [None] * len(deliveries)
        parsed: list[tuple[int, str, Envelope, str]] = []
        rejected: list[tuple[str, str, str]] = []
        for i, (queue, data) in enumerate(deliveries):
            try:
                env = hub.parse_envelope(data)
            except HubMessageError as exc:
                rejected.append((queue, exc.message_fr, data.decode("utf-8", "replace")))
                log.warning("unreadable message on %s rejected: %s", queue, exc.message_fr)
                verdicts[i] = Verdict(False, outcome="unreadable", detail=exc.message_fr)
                continue
            parsed.append((i, queue, env, data.decode("utf-8")))

        def persist(s: HubStore) -> list[str | None]:
            for queue, reason, text in rejected:
                s.record_rejected(queue=queue, reason=reason, body=text, at=at)
            return [
                s.record_inbound(
                    distribution_id=env.distribution_id,
                    queue=queue,
                    sender=env.sender_id,
                    kind=env.kind,
                    model=env.model,
                    envelope=raw,
                    at=at,
                )
                for _, queue, env, raw in parsed
            ]

        known = await self.store.atomic(persist)
        todo: list[tuple[int, Envelope, bool, bool]] = []
        seen: set[str] = set()
        for (i, _queue, env, _raw), state in zip(parsed, known, strict=True):
            if state == "done" or env.distribution_id in seen:
                log.info("duplicate %s ignored", env.distribution_id)
                verdicts[i] = Verdict(True, env.distribution_id, env.kind, env.model, "duplicate")
            else:
                seen.add(env.distribution_id)
                todo.append((i, env, True, state == "received"))
        for i, verdict in zip((t[0] for t in todo), await self._apply_all(todo), strict=True):
            verdicts[i] = verdict
        return [v for v in verdicts if v is not None]

    async def recover(self) -> list[Verdict]:
        """Apply what was persisted but not processed before a crash."""
        pending = await self.store.run(lambda s: s.unfinished_inbound())
        todo: list[tuple[int, Envelope, bool, bool]] = []
        for n, (queue, text) in enumerate(pending):
            try:
                env = self._local_envelope(json.loads(text)) if queue == "file" else None
                env = env or hub.parse_envelope(text)
            except (HubMessageError, ValueError) as exc:
                log.error("hub: stored message unreadable at recovery: %s", exc)
                continue
            todo.append((n, env, queue != "file", True))
        async with self._lock:
            out = await self._apply_all(todo)
        if out:
            log.info("hub: %d message(s) recovered after a restart", len(out))
        return out

    async def import_document(self, document: Any, source: str = "fichier") -> Verdict:
        """A message read from a file (``dossier import-rseda``): an envelope or
        a bare body, processed like a delivery but without answering anyone.
        Raises :class:`HubMessageError` (French) when it is not a Hub message."""
        message, env = hub.unwrap(document)
        if env is None:
            env = self._local_envelope({"message": message}, source)
        assert env is not None
        raw = json.dumps(env.raw, ensure_ascii=False)
        at = self._now().isoformat()
        async with self._lock:
            ready = env
            known = await self.store.atomic(
                lambda s: s.record_inbound(
                    distribution_id=ready.distribution_id,
                    queue="file",
                    sender=ready.sender_id,
                    kind=ready.kind,
                    model=ready.model,
                    envelope=raw,
                    at=at,
                )
            )
            if known == "done":
                return Verdict(True, env.distribution_id, env.kind, env.model, "duplicate")
            return (await self._apply_all([(0, env, False, known == "received")]))[0]

    def _local_envelope(self, document: Any, source: str = "fichier") -> Envelope | None:
        """A bare body stored as ``{"message": ..., "local_id": ...}``."""
        if not isinstance(document, dict) or "content" in document:
            return None
        message = document.get("message")
        if not isinstance(message, dict):
            return None
        root, model = hub.model_of(message)
        local_id = str(document.get("local_id") or f"local_{uuid.uuid4()}")
        document["local_id"] = local_id
        now = self._now()
        return Envelope(
            distribution_id=local_id,
            sender_id=str(document.get("source", source)),
            recipient_id=self.client_id,
            kind="Report",
            status="Actual",
            sent_at=now,
            expires_at=now,
            root=root,
            model=model,
            message=message,
            raw={"message": message, "local_id": local_id, "source": source},
        )

    async def _applied(self, case_id: str, distribution_id: str) -> bool:
        """Whether the case already holds this message's effect: only possible
        when re-processing a message persisted before a crash (a new message
        cannot have been applied, so the case log is not read then)."""
        return self._recovering and await self.cases.applied(case_id, distribution_id)

    async def _apply_all(self, todo: list[tuple[int, Envelope, bool, bool]]) -> list[Verdict]:
        """Plan each message in order (dossier writes submitted), flush the
        dossiers, then record outcomes and answers in one transaction."""
        if not todo:
            return []
        self._batch_appointments = {}
        planned: list[tuple[Envelope, _Plan]] = []
        for _, env, answer, recovering in todo:
            plan = await self._plan(env, recovering)
            if not answer:
                plan.answers.clear()  # a file: nobody to answer
            planned.append((env, plan))
        await self.cases.flush()  # the dossiers are durable before "done"
        at = self._now().isoformat()

        def write(s: HubStore) -> None:
            for env, plan in planned:
                if plan.extra is not None:
                    plan.extra(s)
                for envelope, model in plan.answers:
                    self._enqueue(s, envelope, model, plan.case_id, env.distribution_id, at)
                s.finish_inbound(
                    env.distribution_id,
                    outcome=plan.outcome,
                    detail=plan.detail,
                    at=at,
                    case_id=plan.case_id,
                    appointment_id=plan.appointment_id,
                )

        await self.store.atomic(write)
        out = []
        for env, plan in planned:
            log.info(
                "hub: %s %s from %s: %s",
                env.model,
                env.distribution_id,
                env.sender_id,
                plan.outcome,
            )
            out.append(
                Verdict(
                    True,
                    env.distribution_id,
                    env.kind,
                    env.model,
                    plan.outcome,
                    plan.case_id,
                    plan.appointment_id,
                    plan.detail,
                    tuple(e["distributionID"] for e, _ in plan.answers),
                )
            )
        return out

    async def _plan(self, env: Envelope, recovering: bool) -> _Plan:
        self._recovering = recovering
        if env.kind == "Ack" or env.root == "reference":
            return await self._on_ack(env)
        if env.kind == "Error" or env.root == "error":
            return await self._on_error(env)
        if env.root == "appointment":
            return await self._on_appointment(env)
        if env.root == "createCaseHealth":
            return await self._on_case(env)
        if env.root == "createCaseHealthUpdate":
            return await self._on_update(env)
        plan = _Plan("stored", f"modèle {env.model} conservé sans traitement")
        self._answer(plan, env, hub.ack_body(env.distribution_id, step="RECU"), "RC-REF")
        return plan

    def _answer(self, plan: _Plan, env: Envelope, body: dict[str, Any], model: str) -> str:
        envelope = self._envelope(env.sender_id, body, model, status=env.status)
        plan.answers.append((envelope, model))
        return str(envelope["distributionID"])

    def _refuse(self, plan: _Plan, env: Envelope, code: int, cause: str) -> None:
        """RS-ERROR to the sender, then an RC-REF marking the message refused."""
        plan.outcome = "refused"
        plan.detail = f"{code} {hub.error_label(code)} : {cause}"
        error_id = self._answer(
            plan, env, hub.error_body(code, cause, env.distribution_id, env.raw), "RS-ERROR"
        )
        self._answer(
            plan,
            env,
            hub.ack_body(
                env.distribution_id, step="ERREUR", refused=True, error_distribution_id=error_id
            ),
            "RC-REF",
        )

    async def _on_case(self, env: Envelope) -> _Plan:
        try:
            dossier = from_rseda(env.message)
        except ValidationError as exc:
            plan = _Plan("refused")
            self._refuse(plan, env, 704, exc.message)
            return plan
        plan = _Plan("integrated", case_id=dossier.case_id)
        if await self._applied(dossier.case_id, env.distribution_id):
            pass  # recovery: written before a crash
        elif await self.cases.load(dossier.case_id) is not None:
            self._refuse(plan, env, 701, f"le dossier {dossier.case_id} existe déjà")
            return plan
        else:
            await self.cases.create(dossier, env.distribution_id, env.sender_id)
        self._answer(plan, env, hub.ack_body(env.distribution_id), "RC-REF")
        return plan

    async def _on_update(self, env: Envelope) -> _Plan:
        try:
            case_id = update_case_id(env.message)
        except ValidationError as exc:
            plan = _Plan("refused")
            self._refuse(plan, env, 704, exc.message)
            return plan
        plan = _Plan("updated", case_id=case_id)
        if not await self._applied(case_id, env.distribution_id):
            try:
                changes = await self.cases.update(
                    case_id, env.message, env.distribution_id, env.sender_id
                )
            except ValidationError as exc:
                self._refuse(plan, env, 704, exc.message)
                return plan
            if changes is None:
                self._refuse(
                    plan, env, 702, f"dossier {case_id} inconnu : mise à jour sans création"
                )
                return plan
            plan.detail = " ; ".join(changes)
        self._answer(plan, env, hub.ack_body(env.distribution_id), "RC-REF")
        return plan

    async def _on_appointment(self, env: Envelope) -> _Plan:
        try:
            appt = parse_appointment(env.message)
        except AppointmentError as exc:
            plan = _Plan("refused")
            self._refuse(plan, env, 704, exc.message_fr)
            return plan
        stored = self._batch_appointments.get(appt.appointment_id) or await self.store.run(
            lambda s: s.appointment(appt.appointment_id)
        )
        known = parse_appointment({"appointment": stored.body}) if stored else None
        change = classify(appt, known)
        plan = _Plan(
            {
                Change.CREATED: "appointment_created",
                Change.CREATED_FROM_UPDATE: "appointment_created",
                Change.UPDATED: "appointment_updated",
                Change.UNCHANGED: "appointment_unchanged",
                Change.DUPLICATE: "refused",
            }[change],
            appointment_id=appt.appointment_id,
            case_id=stored.case_id if stored else None,
        )
        if change is Change.DUPLICATE:
            self._refuse(
                plan,
                env,
                409,
                f"rendez-vous {appt.appointment_id} déjà créé (CreateAppointment en double)",
            )
            return plan
        plan.detail = f"{appt.status} {appt.start.isoformat()}"
        at = self._now().isoformat()

        def put(s: HubStore, a: Appointment = appt) -> None:
            s.put_appointment(
                appointment_id=a.appointment_id,
                status=a.status,
                start=a.start.isoformat(),
                created=a.created.isoformat(),
                body=a.raw,
                distribution_id=env.distribution_id,
                change=change.value,
                at=at,
            )

        plan.extra = put
        self._batch_appointments[appt.appointment_id] = StoredAppointment(
            appt.appointment_id,
            appt.raw,
            stored.case_id if stored else None,
            env.distribution_id,
        )
        if (
            stored is not None
            and stored.case_id
            and change is Change.UPDATED
            and not await self._applied(stored.case_id, env.distribution_id)
        ):
            await self.cases.record(
                stored.case_id,
                EventKind.APPOINTMENT,
                {
                    "appointment_id": appt.appointment_id,
                    "status": appt.status,
                    "text": timeline_text(appt),
                    "distribution_id": env.distribution_id,
                    "sender": env.sender_id,
                },
            )
        self._answer(plan, env, hub.ack_body(env.distribution_id), "RC-REF")
        return plan

    async def _on_ack(self, env: Envelope) -> _Plan:
        ref = env.body
        target = str(ref.get("distributionID", ""))
        refused = ref.get("refused") is True
        step = str(ref.get("step", "")) if isinstance(ref.get("step"), str) else ""
        at = self._now().isoformat()
        state = "refused" if refused else "acknowledged"
        settled = await self.store.run(
            lambda s: s.settle(target, state, step=step or ("ERREUR" if refused else "RECU"), at=at)
        )
        plan = _Plan("acknowledged", f"{target} : {state} {step}".strip())
        if settled is not None and settled.case_id:
            plan.case_id = settled.case_id
            if not await self._applied(settled.case_id, env.distribution_id):
                await self.cases.record(
                    settled.case_id,
                    EventKind.HUB_ACK,
                    {
                        "ref": target,
                        "refused": refused,
                        "step": step,
                        "sender": env.sender_id,
                        "distribution_id": env.distribution_id,
                    },
                )
        return plan

    async def _on_error(self, env: Envelope) -> _Plan:
        err = env.body
        code_obj = err.get("errorCode") if isinstance(err.get("errorCode"), dict) else {}
        code = code_obj.get("statusCode") if isinstance(code_obj, dict) else None
        label = code_obj.get("statusString", "") if isinstance(code_obj, dict) else ""
        cause = str(err.get("errorCause", ""))
        refs = [str(err.get("referencedDistributionID", ""))]
        source = err.get("sourceMessage")
        if isinstance(source, dict) and isinstance(source.get("distributionID"), str):
            refs.append(source["distributionID"])
        number = int(code) if isinstance(code, int | float) and not isinstance(code, bool) else 0
        text = f"{number} {label}".strip()
        at = self._now().isoformat()

        def settle(s: HubStore) -> Outbound | None:
            for ref in refs:
                found = s.settle(ref, "error", error=f"{text} : {cause}", at=at) if ref else None
                if found is not None:
                    return found
            return None

        settled = await self.store.run(settle)
        plan = _Plan("error_recorded", f"{text} : {cause}")
        if settled is not None and settled.case_id:
            plan.case_id = settled.case_id
            if not await self._applied(settled.case_id, env.distribution_id):
                explanation = hub.ERROR_CODES.get(number, ("", "erreur"))[1]
                await self.cases.record(
                    settled.case_id,
                    EventKind.HUB_ERROR,
                    {
                        "ref": settled.distribution_id,
                        "code": number,
                        "status": label,
                        "cause": cause,
                        "text": f"Erreur {number} ({explanation}) sur l'envoi à {settled.recipient}",
                        "sender": env.sender_id,
                        "distribution_id": env.distribution_id,
                    },
                )
        return plan

    # ------------------------------------------------------------------ sending
    def _envelope(
        self, recipient: str, body: dict[str, Any], model: str, *, status: str = ""
    ) -> dict[str, Any]:
        now = self._now()
        return hub.build_envelope(
            sender=self.client_id,
            recipient=recipient,
            body=body,
            sent_at=now,
            expires_at=now + timedelta(seconds=self.settings.expiry_for(model)),
            status=status or self.settings.status,
        )

    def _enqueue(
        self,
        s: HubStore,
        envelope: dict[str, Any],
        model: str,
        case_id: str | None,
        ref: str | None,
        at: str,
    ) -> None:
        expires = datetime.fromisoformat(envelope["dateTimeExpires"]).timestamp()
        s.enqueue(
            envelope=envelope, model=model, case_id=case_id, ref=ref, expires_ts=expires, at=at
        )

    async def share_case(self, case_id: str, recipient: str) -> str:
        """Queue the dossier as an RS-EDA to ``recipient``; its distributionID.

        Raises :class:`ValueError` (French) when the case is unknown or the
        recipient is not a client id."""
        if not hub.is_client_id(recipient):
            raise ValueError(f"destinataire « {recipient} » invalide (ex. fr.health.samu380)")
        if recipient == self.client_id:
            raise ValueError("le destinataire ne peut pas être ce centre lui-même")
        dossier = await self.cases.load(case_id)
        if dossier is None:
            raise ValueError(f"dossier introuvable : {case_id}")
        envelope = self._envelope(recipient, to_rseda(dossier), "RS-EDA")
        at = self._now().isoformat()
        await self.store.atomic(lambda s: self._enqueue(s, envelope, "RS-EDA", case_id, None, at))
        did = str(envelope["distributionID"])
        await self.cases.record(
            case_id,
            EventKind.HUB_SHARED,
            {"to": recipient, "model": "RS-EDA", "ref": did, "sender": self.client_id},
        )
        await self.cases.flush()
        return did

    async def send_updates(self, case_id: str, dossier: Dossier | None = None) -> list[str]:
        """The regulator worked a case we shared: to each partner it was shared
        with, one RS-EDA-MAJ carrying what that partner does not have yet
        (notes, decisions, priority / care level, owner), queued in the
        durable outbox with ``HUB_SHARED`` on the dossier.  Returns the
        distributionIDs queued (none when nothing is new or nothing shared).

        What a partner has is read from the messages exchanged with it, in the
        same transaction that queues the update: calling this twice for one
        change (a retry, two listeners) sends it once."""
        if dossier is None:
            dossier = await self.cases.load(case_id)
            if dossier is None:
                return []
        at = self._now().isoformat()
        case = dossier

        def write(s: HubStore) -> list[tuple[str, str, list[str]]]:
            queued = []
            for partner in s.shared_with(case_id):
                bodies = [
                    hub.parse_envelope(text).message for text in s.exchanged(case_id, partner)
                ]
                built = build_update(case, known_from(bodies))
                if built is None:
                    continue
                body, lines = built
                envelope = self._envelope(partner, body, "RS-EDA-MAJ")
                self._enqueue(s, envelope, "RS-EDA-MAJ", case_id, None, at)
                queued.append((partner, str(envelope["distributionID"]), lines))
            return queued

        queued = await self.store.atomic(write)
        for partner, did, lines in queued:
            log.info("hub: update of %s queued for %s (%s)", case_id, partner, did)
            await self.cases.record(
                case_id,
                EventKind.HUB_SHARED,
                {
                    "to": partner,
                    "model": "RS-EDA-MAJ",
                    "ref": did,
                    "sender": self.client_id,
                    "text": "Mise à jour envoyée : " + ", ".join(lines),
                },
            )
        if queued:
            await self.cases.flush()
        return [did for _, did, _ in queued]

    async def consulted(self, case_id: str) -> list[str]:
        """A person opened the dossier: an RC-REF step ``CONSULTE`` to each
        partner whose message about it was not yet seen (once per message).
        Returns the acknowledged distributionIDs."""
        async with self._lock:
            pending = await self.store.run(lambda s: s.unconsulted(case_id))
            if not pending:
                return []
            at = self._now().isoformat()
            answers = []
            for did, sender, text in pending:
                status = hub.parse_envelope(text).status
                envelope = self._envelope(
                    sender, hub.ack_body(did, step="CONSULTE"), "RC-REF", status=status
                )
                answers.append((did, envelope))

            def write(s: HubStore) -> None:
                for did, envelope in answers:
                    self._enqueue(s, envelope, "RC-REF", case_id, did, at)
                    s.mark_consulted(did, at)

            await self.store.atomic(write)
            return [did for did, _ in answers]

    async def check_expiry(self) -> list[Outbound]:
        """Turn what waited past its expiry into ``expired`` (alarm on the dossier)."""
        now = self._now()
        expired = await self.store.atomic(lambda s: s.expire(now.timestamp(), now.isoformat()))
        for row in expired:
            if row.alarm:
                log.warning(
                    "hub: %s to %s not acknowledged before expiry",
                    row.distribution_id,
                    row.recipient,
                )
                if row.case_id:
                    await self.cases.record(
                        row.case_id,
                        EventKind.HUB_ALARM,
                        {
                            "ref": row.distribution_id,
                            "to": row.recipient,
                            "text": f"{row.model} non reçu par {row.recipient} : téléphonez au partenaire",
                            "sender": self.client_id,
                        },
                    )
                for listener in list(self.alarm_listeners):
                    listener(row)
        if expired:
            await self.cases.flush()
        return expired

    # ------------------------------------------------------------------ appointments
    async def attach(self, appointment_id: str, case_id: str, by: str) -> None:
        """Attach an appointment to a dossier (one key, nothing retyped)."""
        stored = await self.store.run(lambda s: s.appointment(appointment_id))
        if stored is None:
            raise ValueError(f"rendez-vous introuvable : {appointment_id}")
        if await self.cases.load(case_id) is None:
            raise ValueError(f"dossier introuvable : {case_id}")
        if stored.case_id == case_id:
            return  # already there (a second key press, a retry): one timeline line
        appt = parse_appointment({"appointment": stored.body})
        at = self._now().isoformat()
        await self.store.atomic(lambda s: s.attach(appointment_id, case_id, by, at))
        await self.cases.record(
            case_id,
            EventKind.APPOINTMENT,
            {
                "appointment_id": appointment_id,
                "status": appt.status,
                "text": timeline_text(appt),
                "attached_by": by,
                "sender": by,
            },
        )
        await self.cases.flush()
