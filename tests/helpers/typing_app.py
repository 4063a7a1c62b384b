"""Drive the real SAS Desk in a subprocess, for the crash test.

    python -m tests.helpers.typing_app type DATA_DIR     # types a call, then idles until killed
    python -m tests.helpers.typing_app resume DATA_DIR   # restarts, resumes, prints the fields
    python -m tests.helpers.typing_app demo DATA_DIR     # geocodes through the demo simulator
    python -m tests.helpers.typing_app slots DATA_DIR    # the slot search starts when first opened

``demo`` prints ``DEMO <json>`` with the status bar's mode text and the
geocoder's answer for a Lyon address, then quits.  ``type`` prints ``EDIT <wall time> <field> <json text>`` after every
keystroke has been handled by the sheet, ``TYPING DONE`` at the end, and
then idles with the app running (the test kills it with SIGKILL at a moment
of its choosing).  ``resume`` prints ``RESUME <json>`` with the banner text
and every field of each resumed sheet, then quits normally.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from sas_desk.app import RunOptions, run
from sas_desk.services.config import Config
from sas_desk.ui.keys import type_text

FIELDS = ("callback", "location", "floor", "access_code", "motive", "age", "note")
SCRIPT = [
    ("callback", "06 12 34 56 78"),
    ("location", "12 rue de la République, Lyon"),
    ("floor", "3e étage"),
    ("access_code", "4521B"),
    ("motive", "douleur thoracique"),
    ("age", "67 ans"),
    ("note", "Douleur depuis 30 min, sueurs, antécédent d'infarctus en 2019."),
]


def emit(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def fields_of(sheet) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {name: getattr(sheet, name).text() for name in FIELDS} | {
        "priority": sheet.priority.value(),
        "branch": sheet.branch.value(),
    }


async def type_call(window) -> None:  # type: ignore[no-untyped-def]
    sheet = window.current_sheet()
    emit(f"CASE {sheet.dossier.case_id}")
    for name, text in SCRIPT:
        widget = getattr(sheet, name)
        widget.setFocus()
        for ch in text:
            type_text(widget, ch)
            emit(f"EDIT {time.time():.6f} {name} {json.dumps(widget.text(), ensure_ascii=False)}")
            await asyncio.sleep(0.02)  # typing pace, not a wait for a result
        if name == "age":
            for key, picker in (("1", sheet.priority), ("a", sheet.branch)):
                picker.setFocus()
                type_text(picker, key)
                emit(f"EDIT {time.time():.6f} {picker.objectName()} {json.dumps(picker.value())}")
                await asyncio.sleep(0.02)
    emit("TYPING DONE")
    await asyncio.Event().wait()  # idle, the app keeps running until SIGKILL


async def resume(window) -> None:  # type: ignore[no-untyped-def]
    banner = window.findChild(object, "resumeBanner")
    out: dict[str, object] = {"banner": banner.label.text() if banner is not None else None}
    window.resume_all(banner)
    sheets = [window.tabs.widget(i) for i in range(window.tabs.count())]
    out["sheets"] = [{"case_id": s.dossier.case_id, **fields_of(s)} for s in sheets]
    emit("RESUME " + json.dumps(out, ensure_ascii=False))
    await window.journal.flush(timeout=5)
    window.close()


async def demo(window) -> None:  # type: ignore[no-untyped-def]
    places, error = await window.resolver.remote_suggestions("12 rue de la République, Lyon")
    out = {
        "mode": window.mode_label.text(),
        "error": error,
        "places": [{"label": p.label, "insee": p.insee} for p in places],
    }
    emit("DEMO " + json.dumps(out, ensure_ascii=False))
    window.close()


async def slots(window) -> None:  # type: ignore[no-untyped-def]
    """The slot service is not built at start-up (its directory sync would
    stall typing); opening the search builds it and syncs the directory."""
    before = window.slot_source is not None
    ready = asyncio.Event()
    original = window.set_slot_source

    def watch(source, note=""):  # type: ignore[no-untyped-def]
        original(source, note)
        if source is not None:
            ready.set()

    window.set_slot_source = watch
    window.open_slot_search()
    await asyncio.wait_for(ready.wait(), 60)
    source = window.slot_source  # the search worker, or the in-process service
    places = source.places if hasattr(source, "places") else source.store.stats().places
    emit(f"SLOTS {json.dumps({'before': before, 'places': places})}")
    window.close()


def main() -> None:
    mode, data_dir = sys.argv[1], Path(sys.argv[2])
    config = Config(data_dir=data_dir, role="ARM", workstation="POSTE-CRASH", operator="arm.crash")
    scenario = {"type": type_call, "resume": resume, "demo": demo, "slots": slots}[mode]
    sys.exit(run(config, RunOptions(on_ready=scenario)))


if __name__ == "__main__":
    main()
