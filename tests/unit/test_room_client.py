"""The workstation's room client without a server: the SSE parser, how
answers become the local backends' errors, and where the token is kept."""

from __future__ import annotations

import asyncio

import httpx
import keyring
import msgspec
import pytest
from keyring.backend import KeyringBackend

from sas_desk.models.queue import ClaimConflict, NotFound, NotHolder, QueueError
from sas_desk.services.queues import wire
from sas_desk.services.queues.api import BackendUnavailable
from sas_desk.services.queues.remote import (
    Credentials,
    LoginCancelled,
    LoginRefused,
    OpenedSession,
    RemoteBackend,
    RoomSession,
    SseEvent,
    SseParser,
    TokenStore,
)
from tests.unit.test_queue_wire import CLAIM


def parse(text: str) -> list[SseEvent]:
    parser = SseParser()
    out = []
    for line in text.split("\n"):
        event = parser.feed(line)
        if event is not None:
            out.append(event)
    return out


def test_sse_events_ids_comments_and_multiline_data() -> None:
    events = parse(
        ": keep-alive\n\n"
        'event: changes\nid: b1.1\ndata: {"reset": true}\n\n'
        "event: changes\r\nid: b1.2\r\ndata: line one\r\ndata:line two\r\n\r\n"
        "data: no event name\n\n"
        'event: bye\ndata: {"reason_fr": "Arrêt du serveur"}\n\n'
        "event: changes\nid: b1.3\n\n"  # no data: not dispatched
        "event: changes\ndata: cut before the blank line"
    )
    assert events == [
        SseEvent("changes", '{"reset": true}', "b1.1"),
        SseEvent("changes", "line one\nline two", "b1.2"),
        SseEvent("message", "no event name", None),
        SseEvent("bye", '{"reason_fr": "Arrêt du serveur"}', None),
    ]


def answer(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, content=msgspec.json.encode(body))


def refusal(status: int, body: object, case_id: str = "") -> Exception:
    backend = RemoteBackend(RoomSession("http://127.0.0.1:1", "POSTE-01"))
    return backend._refusal(answer(status, body), case_id)


def test_refusals_become_the_local_backends_errors() -> None:
    conflict = refusal(409, wire.error_body(ClaimConflict(CLAIM)))
    assert isinstance(conflict, ClaimConflict) and conflict.claim == CLAIM
    assert "dr.durand" in conflict.message_fr
    not_holder = refusal(409, wire.error_body(NotHolder("x", CLAIM), "x"))
    assert isinstance(not_holder, NotHolder) and not_holder.claim == CLAIM
    missing = refusal(404, wire.error_body(NotFound("fr.x")), "fr.x")
    assert isinstance(missing, NotFound)
    forbidden = refusal(403, wire.error_body(QueueError("Hors de vos files.", "forbidden")))
    assert type(forbidden) is QueueError and forbidden.code == "forbidden"
    assert forbidden.message_fr == "Hors de vos files."
    invalid = refusal(422, {"error": "QueueError", "code": "invalid", "message_fr": "Champ."})
    assert type(invalid) is QueueError and invalid.code == "invalid"


@pytest.mark.parametrize("status", [500, 502, 503, 504, 429])
def test_a_server_in_trouble_is_unavailable_so_the_outbox_keeps_the_operation(
    status: int,
) -> None:
    error = refusal(status, {"detail": "Internal Server Error"})
    assert isinstance(error, BackendUnavailable) and error.message_fr.startswith("Serveur de salle")


def test_a_body_that_is_no_refusal_is_still_a_french_error() -> None:
    odd = refusal(400, {"status_code": 400, "detail": "Bad Request"})
    assert type(odd) is QueueError and "(400)" in odd.message_fr


@pytest.mark.asyncio
async def test_network_failure_is_unavailable_with_a_french_message() -> None:
    session = RoomSession("http://127.0.0.1:9", "POSTE-01", connect_timeout=1.0)
    try:
        with pytest.raises(BackendUnavailable) as caught:
            await session.login(Credentials("arm.martin", "x", "ARM"))
        assert caught.value.message_fr.startswith("Serveur de salle injoignable")
    finally:
        await session.close()


def test_plain_http_is_refused_off_loopback() -> None:
    with pytest.raises(ValueError, match="http://"):
        RoomSession("http://salle.samu69.local", "POSTE-01")


@pytest.mark.parametrize(
    ("credentials", "problem"),
    [
        (Credentials("", "x", "MRU"), "Identifiant et mot de passe requis."),
        (Credentials("dr.durand", "", "MRU"), "Identifiant et mot de passe requis."),
        (Credentials("dr.durand", "x", ""), "Choisissez le rôle de la session."),
        (Credentials("dr.durand", "x", "MRU"), None),
    ],
)
def test_credentials_problem(credentials: Credentials, problem: str | None) -> None:
    assert credentials.problem() == problem


class MemoryKeyring(KeyringBackend):
    priority = 1

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.store: dict[tuple[str, str], str] = {}

    def get_password(self, service: str, username: str) -> str | None:
        return self.store.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.store[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        self.store.pop((service, username), None)


@pytest.fixture
def memory_keyring() -> object:
    previous = keyring.get_keyring()
    ring = MemoryKeyring()
    keyring.set_keyring(ring)
    yield ring
    keyring.set_keyring(previous)


def test_the_token_goes_to_the_keyring(memory_keyring: MemoryKeyring) -> None:
    async def scenario() -> None:
        store = TokenStore("https://salle:8443/", "POSTE-01")
        await store.save("r1")
        assert memory_keyring.store == {("sas-desk", "room:https://salle:8443#POSTE-01"): "r1"}
        again = TokenStore("https://salle:8443", "POSTE-01")  # the next start
        assert await again.load() == "r1"
        await again.clear()
        assert memory_keyring.store == {} and await store.load() is None
        assert store.notice_fr == "" == again.notice_fr

    asyncio.run(scenario())


def test_without_a_usable_keyring_the_token_stays_in_memory_and_says_so() -> None:
    async def scenario() -> None:
        store = TokenStore("https://salle", "POSTE-01")  # tests: the null keyring
        assert await store.load() is None and store.notice_fr == ""
        await store.save("r1")
        assert await store.load() == "r1"
        assert store.notice_fr.startswith("Trousseau système indisponible")
        await store.clear()
        assert await store.load() is None

    asyncio.run(scenario())


@pytest.mark.asyncio
async def test_a_session_opened_elsewhere_is_taken() -> None:
    """An OpenID Connect login (services/auth/login.py) ends with the same
    SessionBody as POST /v1/session: the workstation's session takes it."""
    session = RoomSession("http://127.0.0.1:9", "POSTE-01")
    seen: list[object] = []
    session.listeners.append(seen.append)
    body = {
        "access_token": "a",
        "refresh_token": "r",
        "expires_in": 900,
        "operator": "dr.durand",
        "role": "MRU",
        "workstation": "POSTE-01",
        "display_name": "Dr Durand",
    }
    info = await session.take(answer(200, body))
    assert (info.operator, info.role, info.workstation) == ("dr.durand", "MRU", "POSTE-01")
    assert seen == [info] and await session.tokens.load() == "r"
    refused = {"error": "Forbidden", "code": "forbidden", "message_fr": "Compte désactivé."}
    with pytest.raises(LoginRefused) as caught:
        await session.take(answer(403, refused))
    assert (caught.value.code, caught.value.message_fr) == ("forbidden", "Compte désactivé.")
    await session.close()


def session_body(access: str, operator: str, role: str = "ARM") -> dict[str, object]:
    return {
        "access_token": access,
        "refresh_token": "r-" + access,
        "expires_in": 900,
        "operator": operator,
        "role": role,
        "workstation": "POSTE-01",
    }


@pytest.mark.asyncio
async def test_relogin_replaces_the_session_and_closes_the_old_one() -> None:
    """Unlocking or handing the workstation over: the provider's answer (a
    password or a session an OIDC login opened) replaces the session, the
    old one is closed on the server; giving up keeps the current one."""
    deleted: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            deleted.append(request.headers["Authorization"])
            return httpx.Response(204)
        login = msgspec.json.decode(request.content)["login"]
        return answer(200, session_body("a2", login))

    answers: list[Credentials | OpenedSession | None] = [
        Credentials("arm.durand", "secret", "ARM"),
        OpenedSession(answer(200, session_body("a3", "arm.leroy"))),
        None,
    ]

    async def provider(reason: str) -> Credentials | OpenedSession | None:
        return answers.pop(0)

    session = RoomSession(
        "http://127.0.0.1:9", "POSTE-01", credentials=provider,
        transport=httpx.MockTransport(server),
    )  # fmt: skip
    await session.take(answer(200, session_body("a1", "arm.durand")))
    again = await session.relogin("Poste verrouillé")
    assert again.operator == "arm.durand" and deleted == ["Bearer a1"]
    handed = await session.relogin("Changement d'opérateur")
    assert handed.operator == "arm.leroy" and deleted == ["Bearer a1", "Bearer a2"]
    with pytest.raises(LoginCancelled):
        await session.relogin("Changement d'opérateur")
    assert session.info == handed and deleted == ["Bearer a1", "Bearer a2"]
    assert await session.tokens.load() == "r-a3"
    await session.close()
