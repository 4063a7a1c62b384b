"""Patient data at rest on the workstation (issue 15): per-record AES-GCM.

Every record of a local store that holds patient data (the journal's
dossier snapshots and events, the outbox's operations, the embedded queue
file's dossiers, events and queue cards) is sealed with AES-256-GCM
(``cryptography``): a fresh 96-bit nonce per record, the record's key (its
case id, in the queue file prefixed with its table) as associated data so
that a record moved to another row does not open.  A sealed value is text,
``aes1:`` + base64url(nonce + ciphertext); a value without the prefix is a
record written before encryption and is read as it is.

Why per record and not SQLCipher (both measured in one run by
``bench/autosave.py --sqlcipher``, figures in bench/README.md): a maintained
binding installs from wheels (``sqlcipher3-wheels``) and its page encryption
did not cost the journal more than sealing did, within the shared machine's
noise; but it would replace the standard ``sqlite3`` module in every store
by a compiled dependency of its own, no file could be read any more with
the stock ``sqlite3`` (the statistics' read-only connection, the tests'
tampering checks, a support engineer's look), and even the non-patient
statistics would need the key.  Sealing costs ~20 µs per 2 KB record, far
inside the 50 ms keystroke-to-durable goal.  What stays in the clear: case
ids, times, statuses, roles, operators' logins, and the queue file's
statistical facts (codes, age band, département) — no patient field.

The key (256 bits) is the workstation's: :func:`data_key` keeps it in the
system keyring (service ``sas-desk``, user ``data-key:<data dir>``); where no
keyring works, in a 0600 file beside the data dir (``<data dir>.key``) and
the window says so.  Losing the key loses the local copies, never the
room's record (the room server keeps it).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import logging
import os
import secrets
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from sas_desk.models.errors import KnownError
from sas_desk.services.private import KEYRING_FR

if TYPE_CHECKING:
    from keyring.backend import KeyringBackend

__all__ = ["DataKey", "KeyGate", "RecordCipher", "SealError", "data_key", "key_file_for"]

log = logging.getLogger("sas_desk.atrest")

KEYRING_SERVICE = "sas-desk"
PREFIX = "aes1:"
_NONCE = 12


class SealError(KnownError):
    """A sealed record that does not open (another key, altered bytes)."""

    def __init__(self, message_fr: str) -> None:
        super().__init__(message_fr)
        self.message_fr = message_fr


class RecordCipher:
    def __init__(self, key: bytes) -> None:
        if len(key) != 32:
            raise ValueError("an AES-256 key is 32 bytes")
        # imported here, once a key is read: not on the path to the first window
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        self._aead = AESGCM(key)

    def __repr__(self) -> str:  # never the key
        return "RecordCipher(…)"

    def seal(self, text: str, aad: str) -> str:
        nonce = secrets.token_bytes(_NONCE)
        sealed = self._aead.encrypt(nonce, text.encode("utf-8"), aad.encode("utf-8"))
        return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode("ascii")

    def open(self, stored: str, aad: str) -> str:
        if not stored.startswith(PREFIX):
            return stored  # written before encryption
        from cryptography.exceptions import InvalidTag

        try:
            raw = base64.urlsafe_b64decode(stored[len(PREFIX) :])
            plain = self._aead.decrypt(raw[:_NONCE], raw[_NONCE:], aad.encode("utf-8"))
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise SealError(
                "Donnée locale chiffrée illisible (clé de ce poste différente ou fichier altéré)."
            ) from exc
        return plain.decode("utf-8")


class KeyGate:
    """The cipher of stores opened before the workstation's key is read: the
    window paints first and the key (keyring, which may ask the desktop to
    unlock it) comes after (``app.main``).  Whatever seals or opens a record
    waits here; the rest — opening the file, case ids, counts — does not, so
    what is typed meanwhile stays in memory and is written, sealed, once the
    key is there.  :meth:`fail` when no key can be had: waiters get a
    :class:`SealError` and nothing is ever written in the clear."""

    def __init__(self) -> None:
        self._ready = asyncio.Event()
        self._cipher: RecordCipher | None = None
        self.failed = False

    def __repr__(self) -> str:  # never the key
        return f"KeyGate(ready={self.ready}, failed={self.failed})"

    @property
    def ready(self) -> bool:
        return self._ready.is_set()

    def set(self, cipher: RecordCipher | None) -> None:
        """The key is read (``None``: the bench's clear journal)."""
        self._cipher = cipher
        self._ready.set()

    def fail(self) -> None:
        self.failed = True
        self._ready.set()

    async def cipher(self) -> RecordCipher | None:
        await self._ready.wait()
        if self.failed:
            raise SealError(
                "Clé des données locales indisponible : rien n'est écrit sur le disque."
            )
        return self._cipher


def seal(cipher: RecordCipher | None, text: str, aad: str) -> str:
    return cipher.seal(text, aad) if cipher is not None else text


def unseal(cipher: RecordCipher | None, stored: str, aad: str) -> str:
    if cipher is None:
        if stored.startswith(PREFIX):
            raise SealError("Donnée locale chiffrée : la clé de ce poste n'est pas disponible.")
        return stored
    return cipher.open(stored, aad)


@dataclass(frozen=True)
class DataKey:
    key: bytes = field(repr=False)
    notice_fr: str = ""  # said in the window when the key is not in the keyring

    def cipher(self) -> RecordCipher:
        return RecordCipher(self.key)


def key_file_for(data_dir: Path) -> Path:
    return data_dir.parent / f"{data_dir.name}.key"


def _account(data_dir: Path) -> str:
    return f"data-key:{data_dir.resolve()}"


_BACKEND_READY = threading.Lock()


_FREEDESKTOP_BACKENDS = (
    ("keyring.backends.SecretService", "Keyring"),
    ("keyring.backends.kwallet", "DBusKeyring"),
    ("keyring.backends.libsecret", "Keyring"),
)


def _keyring() -> ModuleType:
    """The keyring module with its backend chosen (once: the choice may probe
    the desktop's secret service).  Other modules of this process that call
    ``keyring`` afterwards use the same backend."""
    core = sys.modules.get("keyring.core")
    chosen = core is not None and core._keyring_backend is not None  # set_keyring() wins
    if not chosen and _no_desktop_keyring():
        raise NoDesktopKeyring("no session bus, no keyring configured")
    with _BACKEND_READY:
        import keyring.core

        if keyring.core._keyring_backend is None:  # not chosen yet in this process
            keyring.core.set_keyring(_choose_backend())
    return keyring


class NoDesktopKeyring(RuntimeError):
    """No keyring can work here (see :func:`_no_desktop_keyring`)."""


def _no_desktop_keyring() -> bool:
    """True where no keyring backend can work, known without importing
    ``keyring`` (~0.1 s of imports: urllib, email, importlib_metadata…):
    neither macOS nor Windows, no backend named (``PYTHON_KEYRING_BACKEND``,
    ``keyringrc.cfg``), and no D-Bus session bus (its address in the
    environment or its socket in ``$XDG_RUNTIME_DIR``), which the
    freedesktop backends all need — a headless machine, a service, a bench."""
    if sys.platform in ("darwin", "win32") or os.environ.get("PYTHON_KEYRING_BACKEND"):
        return False
    if os.environ.get("DBUS_SESSION_BUS_ADDRESS"):
        return False
    runtime = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    if os.path.exists(os.path.join(runtime, "bus")):
        return False
    config = os.environ.get("XDG_CONFIG_HOME") or os.path.join(os.path.expanduser("~"), ".config")
    return not os.path.exists(os.path.join(config, "python_keyring", "keyringrc.cfg"))


def _choose_backend() -> KeyringBackend:
    """What ``keyring`` would choose, without its cost on Linux: there its own
    choice imports every backend it knows, the macOS one included, whose
    import looks for the Security framework with ``ctypes.util.find_library``
    — ``ldconfig`` and, where a C compiler is installed, a ``gcc`` and an
    ``ld`` run per framework (~0.2 s, measured with strace on the start-up
    path).  A backend named by ``PYTHON_KEYRING_BACKEND`` or ``keyringrc.cfg``
    still wins; on macOS and Windows, keyring's own choice; elsewhere the
    best of the freedesktop backends (Secret Service, KWallet, libsecret —
    each judges its own viability, as in keyring), else none (``fail``)."""
    import importlib

    import keyring.core
    from keyring.backends import fail

    configured = keyring.core.load_env() or keyring.core.load_config()
    if configured is not None:
        return configured
    if sys.platform in ("darwin", "win32"):
        return keyring.core._detect_backend()
    viable: list[KeyringBackend] = []
    for module_name, class_name in _FREEDESKTOP_BACKENDS:
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
            if cls.viable:
                viable.append(cls())
        except Exception as exc:  # a backend that cannot even load: not viable
            log.debug("keyring backend %s not viable (%s)", module_name, type(exc).__name__)
    none: KeyringBackend = fail.Keyring()  # type: ignore[no-untyped-call]
    return max(viable, key=lambda ring: ring.priority, default=none)


def warm_keyring() -> None:
    """Choose the keyring backend ahead of :func:`data_key` (from a thread
    started before the window's modules load): no secret is read; a keyring
    that fails here fails again, and is said, in :func:`data_key`."""
    with contextlib.suppress(Exception):
        _keyring()


def _from_keyring(account: str) -> tuple[bytes | None, bool]:
    """(key, keyring usable)."""
    try:
        keyring = _keyring()
        found = keyring.get_password(KEYRING_SERVICE, account)
    except Exception as exc:  # no usable keyring (headless machine, locked store)
        log.info("keyring unusable for the data key (%s)", type(exc).__name__)
        return None, False
    if not found:
        return None, True
    try:
        key = base64.b64decode(found, validate=True)
    except binascii.Error:
        return None, True
    return (key if len(key) == 32 else None), True


def _to_keyring(account: str, key: bytes) -> bool:
    text = base64.b64encode(key).decode("ascii")
    try:
        keyring = _keyring()
        keyring.set_password(KEYRING_SERVICE, account, text)
        stored: str | None = keyring.get_password(KEYRING_SERVICE, account)
        return stored == text
    except Exception as exc:
        log.info("keyring refused the data key (%s)", type(exc).__name__)
        return False


def _read_key_file(path: Path) -> bytes | None:
    try:
        raw = path.read_bytes()[:200]
    except FileNotFoundError:
        return None
    try:
        key = base64.b64decode(raw.strip(), validate=True)
    except binascii.Error:
        key = b""
    if len(key) != 32:
        raise SealError(f"Fichier de clé des données locales illisible : {path}.")
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return key


def _write_key_file(path: Path, key: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(base64.b64encode(key) + b"\n")
        out.flush()
        os.fsync(out.fileno())


def data_key(data_dir: Path) -> DataKey:
    """The workstation's data key: from the keyring, else the key file beside
    the data dir; made on the first start (keyring first).  Blocking (the
    keyring may ask the desktop): call it from a worker thread."""
    account = _account(data_dir)
    key, usable = _from_keyring(account)
    if key is not None:
        return DataKey(key)
    path = key_file_for(data_dir)
    notice = (
        f"{KEYRING_FR}la clé de chiffrement des données locales est "
        f"gardée dans le fichier {path} (lisible par ce seul compte)."
    )
    stored = _read_key_file(path)
    if stored is not None:
        return DataKey(stored, notice)
    key = secrets.token_bytes(32)
    if usable and _to_keyring(account, key):
        log.info("data key made and kept in the keyring")
        return DataKey(key)
    try:
        _write_key_file(path, key)
    except FileExistsError:  # another process of this workstation made it first
        again = _read_key_file(path)
        assert again is not None
        return DataKey(again, notice)
    log.warning("data key kept in a file beside the data dir (no usable keyring)")
    return DataKey(key, notice)
