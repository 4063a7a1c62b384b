"""Late-call escalation: a P0 or P1 nobody took past its waiting limit
(:func:`~sas_desk.models.queue.is_escalated`) raises a banner that cannot be
closed and a sound, on every workstation that follows its queue (the
supervisor's follows them all), until someone claims it.

The sound can be muted on a workstation (a setting kept on that machine,
``escalation/muted``); the banner cannot.  The sound is Qt Multimedia's when
it is installed and works, else the system bell.  No patient field is
shown: priority, wait, motive, commune, as in the queue.
"""

from __future__ import annotations

import logging
import math
import struct
import tempfile
from collections.abc import Callable, Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from PySide6.QtCore import QSettings, Qt, QTimer, QUrl, Signal
from PySide6.QtWidgets import QApplication, QHBoxLayout, QLabel, QPushButton, QWidget

from sas_desk.models.codes import codelist
from sas_desk.models.queue import QueueItem, WaitLimits, escalated
from sas_desk.ui.queue_model import format_wait
from sas_desk.ui.widgets import named

log = logging.getLogger("sas_desk.ui.escalation")

MUTED_KEY = "escalation/muted"
REPEAT_S = 30.0  # the sound again while an escalated call still waits


def _alarm_wav() -> Path:
    """Two short tones (880 Hz, 660 Hz), written once per process."""
    import wave

    path = Path(tempfile.gettempdir()) / "sas-desk-alarm.wav"
    if path.exists():
        return path
    rate = 22050
    frames = bytearray()
    for freq in (880.0, 660.0, 880.0):
        for n in range(int(rate * 0.18)):
            fade = min(1.0, n / 200, (rate * 0.18 - n) / 200)
            value = int(12000 * fade * math.sin(2 * math.pi * freq * n / rate))
            frames += struct.pack("<h", value)
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(bytes(frames))
    return path


class Alarm:
    """Qt Multimedia's sound effect when available, else the system bell.
    Qt Multimedia is loaded at the first ring, not at startup."""

    def __init__(self) -> None:
        self._effect: Any = None
        self._tried = False
        self.kind = ""  # "multimedia" | "beep", once rung

    def _load(self) -> None:
        self._tried = True
        try:
            from PySide6.QtMultimedia import QSoundEffect
        except (ImportError, OSError) as exc:  # Addons missing or no audio library
            log.info("no Qt Multimedia (%s): the system bell rings", type(exc).__name__)
            return
        try:
            effect = QSoundEffect()
            effect.setSource(QUrl.fromLocalFile(str(_alarm_wav())))
            effect.setVolume(0.9)
        except OSError as exc:
            log.info("alarm sound not written (%s): the system bell rings", type(exc).__name__)
            return
        self._effect = effect

    def ring(self) -> None:
        if not self._tried:
            self._load()
        effect = self._effect
        if effect is not None and effect.isLoaded():
            effect.play()
            self.kind = "multimedia"
        else:
            QApplication.beep()
            self.kind = "beep"


class EscalationBar(QWidget):
    """The banner (hidden while nothing is escalated).  ``items`` gives the
    queue items this workstation follows; checked every second.  ``rang``
    is emitted each time the sound is played (muted: never)."""

    rang = Signal()

    def __init__(
        self,
        items: Callable[[], Iterable[QueueItem]],
        limits: WaitLimits,
        now: Callable[[], datetime],
        *,
        can_claim: bool = True,
        settings: QSettings | None = None,
        ring: Callable[[], None] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("escalationBar")
        self._items = items
        self.limits = limits
        self._now = now
        self.can_claim = can_claim
        self.settings = settings if settings is not None else QSettings()
        self._alarm = Alarm()
        self._ring = ring or self._alarm.ring
        self.current: list[QueueItem] = []
        self._last_ring = -math.inf
        self._rung_for: set[str] = set()
        self.setAttribute(Qt.WidgetAttribute.WA_StyledBackground, True)
        self.setStyleSheet(
            "#escalationBar { background: #b00020; border-radius: 4px; }"
            " #escalationBar QLabel { color: white; font-weight: bold; }"
        )
        layout = QHBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 4)
        self.label = named(QLabel(), "escalationText")
        self.label.setWordWrap(True)
        layout.addWidget(self.label, 1)
        self.mute = named(QPushButton(), "escalationMute")
        self.mute.setCheckable(True)
        self.mute.setFocusPolicy(Qt.FocusPolicy.NoFocus)  # never steals the operator's keys
        self.mute.setChecked(self.muted())
        self.mute.toggled.connect(self.set_muted)
        self._mute_text()
        layout.addWidget(self.mute)
        self.hide()
        self._timer = QTimer(self, interval=1000)
        self._timer.timeout.connect(self.check)
        self._timer.start()

    # ------------------------------------------------------------------ setting
    def muted(self) -> bool:
        value = self.settings.value(MUTED_KEY, False)
        return value in (True, "true", "1", 1)

    def set_muted(self, muted: bool) -> None:
        self.settings.setValue(MUTED_KEY, bool(muted))
        self.settings.sync()
        if self.mute.isChecked() != muted:
            self.mute.setChecked(muted)
        self._mute_text()
        log.info("escalation sound %s on this workstation", "muted" if muted else "on")

    def _mute_text(self) -> None:
        self.mute.setText("Son coupé — réactiver" if self.mute.isChecked() else "Couper le son")

    # ------------------------------------------------------------------ check
    def check(self) -> None:
        now = self._now()
        late = escalated(self._items(), now, self.limits)
        self.current = late
        if not late:
            self._rung_for.clear()
            if not self.isHidden():
                self.hide()
            return
        self.label.setText(self._text(late, now))
        if self.isHidden():
            self.show()
        ids = {i.case_id for i in late}
        fresh = bool(ids - self._rung_for)  # a call newly late rings at once
        self._rung_for &= ids
        clock = _monotonic()
        if (fresh or clock - self._last_ring >= REPEAT_S) and not self.muted():
            self._rung_for |= ids
            self._last_ring = clock
            self._ring()
            self.rang.emit()

    def _text(self, late: list[QueueItem], now: datetime) -> str:
        head = late[0]
        motive = head.motive_label or (
            codelist("motive").label(head.motive_code) if head.motive_code else ""
        )
        what = ", ".join(x for x in (motive, head.commune) if x)
        text = (
            f"⚠ {head.priority} non pris depuis "
            f"{format_wait(head.waited(now).total_seconds())} (file {head.queue.value})"
        )
        if what:
            text += f" — {what}"
        if len(late) > 1:
            text += f" — et {len(late) - 1} autre(s) appel(s) urgent(s) en retard"
        if self.can_claim:
            text += " — F2 : prendre le suivant"
        return text


def _monotonic() -> float:
    import time

    return time.monotonic()
