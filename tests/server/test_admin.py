"""Administration of the room server: least-privilege PostgreSQL role
(``db upgrade`` + ``db grant``), ``server check`` and ``server verify-log``."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from uuid import uuid4

import httpx
import pytest
import trustme

from tests.helpers.room_server import PG_DSN, RoomDatabase, RoomServer, run_async
from tests.integration.queues.support import make_dossier
from tests.server.conftest import make_database
from tests.server.test_process import sas_desk

PASSWORD = "un-mot-de-passe-solide"


@pytest.fixture
def server_role() -> Iterator[tuple[RoomDatabase, RoomDatabase]]:
    """(owner's database, the server's limited role on it): a fresh schema,
    migrated by the owner, and a NOSUPERUSER login granted by ``db grant``."""
    import psycopg
    from psycopg import sql

    owner = make_database("postgres", Path("."))
    role = f"srv_{uuid4().hex[:10]}"
    with psycopg.connect(PG_DSN, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER").format(sql.Identifier(role)))
    limited = RoomDatabase(PG_DSN.replace("postgres@", f"{role}@", 1), owner.schema, "postgres")
    try:
        yield owner, limited
    finally:
        owner.drop()
        with psycopg.connect(PG_DSN, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_the_server_runs_with_insert_only_rights_on_the_logs(
    server_role: tuple[RoomDatabase, RoomDatabase], tmp_path: Path
) -> None:
    import psycopg

    owner, limited = server_role
    base = ("--dsn", owner.dsn, "--schema", owner.schema)
    up = sas_desk("server", "db", "upgrade", *base)
    assert up.returncode == 0, up.stderr
    role = limited.dsn.split("//")[1].split("@")[0]
    printed = sas_desk("server", "db", "grant", *base, "--to", role, "--print")
    assert "GRANT SELECT, INSERT ON" in printed.stdout and '"events"' in printed.stdout
    granted = sas_desk("server", "db", "grant", *base, "--to", role)
    assert granted.returncode == 0, granted.stderr
    run_async(owner.add_user("dr.durand", ["MRU", "ARM"], PASSWORD))
    # the limited role passes the check without --allow-superuser
    check = sas_desk("server", "check", "--dsn", limited.dsn, "--schema", limited.schema)
    assert check.returncode == 0, check.stdout + check.stderr
    server = RoomServer.start(limited, tmp_path, allow_superuser=False)
    try:
        body = server.login("dr.durand", PASSWORD, "ARM", "POSTE-01")
        d = make_dossier(7)
        r = httpx.post(
            f"{server.url}/v1/ops",
            headers={"Authorization": f"Bearer {body['access_token']}"},
            json={
                "op_id": uuid4().hex,
                "kind": "enqueue",
                "case_id": d.case_id,
                "data": {"dossier": d.to_dict()},
            },
        )
        assert r.status_code == 200, r.text
    finally:
        assert server.stop() == 0
    with psycopg.connect(limited.dsn, options=f"-c search_path={limited.schema}") as conn:
        for statement in (
            "UPDATE events SET kind = kind",
            "DELETE FROM events",
            "UPDATE audit SET action = action",
            "DELETE FROM audit",
            "INSERT INTO accounts (login, roles, password_hash, created_at) VALUES ('x', 'SUP', 'x', now())",
            "CREATE TABLE intruder (x int)",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)
            conn.rollback()


def test_grant_refuses_a_superuser_role() -> None:
    db = make_database("postgres", Path("."))
    try:
        assert (
            sas_desk("server", "db", "upgrade", "--dsn", db.dsn, "--schema", db.schema).returncode
            == 0
        )
        r = sas_desk(
            "server", "db", "grant", "--dsn", db.dsn, "--schema", db.schema, "--to", "postgres"
        )
    finally:
        db.drop()
    assert r.returncode == 1 and "superutilisateur" in r.stderr


def _certificate(tmp_path: Path, not_after: datetime) -> tuple[Path, Path]:
    ca = trustme.CA()
    leaf = ca.issue_cert(
        "desk.samu69.local", not_before=not_after - timedelta(days=400), not_after=not_after
    )
    cert, key = tmp_path / "server.pem", tmp_path / "server-key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return cert, key


def test_check_names_an_expired_certificate_and_unmigrated_tables(tmp_path: Path) -> None:
    cert, key = _certificate(tmp_path, datetime.now(UTC) - timedelta(days=1))
    dsn = f"sqlite://{tmp_path / 'room.sqlite'}"
    args = (
        "server",
        "check",
        "--dsn",
        dsn,
        "--listen",
        "0.0.0.0:8443",
        "--tls-cert",
        str(cert),
        "--tls-key",
        str(key),
    )
    r = sas_desk(*args)
    assert r.returncode == 1
    assert "expiré" in r.stderr and "db upgrade" in r.stderr  # nothing migrated yet
    good_cert, good_key = _certificate(tmp_path, datetime.now(UTC) + timedelta(days=365))
    assert sas_desk("server", "db", "upgrade", "--dsn", dsn).returncode == 0
    ok = sas_desk(
        "server",
        "check",
        "--dsn",
        dsn,
        "--listen",
        "0.0.0.0:8443",
        "--tls-cert",
        str(good_cert),
        "--tls-key",
        str(good_key),
    )
    assert ok.returncode == 0, ok.stderr
    assert "valide jusqu'au" in ok.stdout and "à jour" in ok.stdout
    assert "Traceback" not in r.stderr + ok.stderr


def test_verify_log_reports_a_deleted_event(db: RoomDatabase, tmp_path: Path) -> None:
    run_async(db.add_user("arm.martin", ["ARM"], PASSWORD))
    server = RoomServer.start(db, tmp_path)
    try:
        auth = {
            "Authorization": f"Bearer {server.login('arm.martin', PASSWORD, 'ARM', 'P1')['access_token']}"
        }
        for n in (1, 2):
            d = make_dossier(n)
            for kind in ("enqueue", "note"):
                data = {"dossier": d.to_dict()} if kind == "enqueue" else {"text": "rappel"}
                r = httpx.post(
                    f"{server.url}/v1/ops",
                    headers=auth,
                    json={"op_id": uuid4().hex, "kind": kind, "case_id": d.case_id, "data": data},
                )
                assert r.status_code in (200, 403), r.text
    finally:
        assert server.stop() == 0
    base = ("--dsn", db.dsn, "--schema", db.schema)
    intact = sas_desk("server", "verify-log", *base)
    assert intact.returncode == 0, intact.stderr
    assert "intact" in intact.stdout
    victim = make_dossier(1).case_id
    _delete_first_event(db, victim)
    broken = sas_desk("server", "verify-log", *base)
    assert broken.returncode == 1
    assert victim in broken.stdout and "RUPTURE" in broken.stdout


def _delete_first_event(db: RoomDatabase, case_id: str) -> None:
    """What a schema owner could do by hand: disable the guard and delete."""
    if db.kind == "sqlite":
        path = db.dsn.removeprefix("sqlite://")
        conn = sqlite3.connect(path)
        names = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'"
            )
        ]
        for name in names:
            conn.execute(f"DROP TRIGGER {name}")
        conn.execute(
            "DELETE FROM events WHERE seq = (SELECT min(seq) FROM events WHERE case_id = ?)",
            (case_id,),
        )
        conn.commit()
        conn.close()
        return
    import psycopg

    with psycopg.connect(db.dsn, options=f"-c search_path={db.schema}") as conn:
        conn.execute("ALTER TABLE events DISABLE TRIGGER USER")
        conn.execute(
            "DELETE FROM events WHERE seq = (SELECT min(seq) FROM events WHERE case_id = %s)",
            (case_id,),
        )
        conn.execute("ALTER TABLE events ENABLE TRIGGER USER")
