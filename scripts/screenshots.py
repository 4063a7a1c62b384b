"""Render SAS Desk's main screens to PNG files, driving the real app.

    xvfb-run -s "-screen 0 1600x1000x24" python scripts/screenshots.py [OUT_DIR]

(or QT_QPA_PLATFORM=offscreen).  Starts the embedded demo on a temporary data
dir, types a call as an ARM would, and saves: the role picker, an empty call
sheet, a filled call sheet with suggestions open, the sheet after transmission
with the Dossiers du jour, the resume banner after a restart, the regulators'
queues, and the OSNP's slot search (a Lyon address: list and map, a facet,
one vendor failing with the booking question, the "en sus" volunteers), and
the dental regulator's view (the dental dossier of the first call claimed
from the DENT queue: the on-call dentist of its commune next Sunday and the
triage aid; then a trauma in Lyon with the phone copied, and a search by
dentist name).

With ``SAS_DESK_SHOTS_DSN=postgresql://…`` (or ``sqlite:///FILE``) the
workstations work in production mode: a room server (``sas-desk server``,
loopback) runs on that store (a PostgreSQL schema of its own, dropped at the
end), each workstation logs in through the login dialog (the first one is
refused once for its password and once for a role its account does not
have: ``00-login*`` pictures) and the queues go through the server (the
OSNP's and the dentist's pictures, which need the demo simulator, are left
out).
"""

from __future__ import annotations

import asyncio
import os
import sys
import tempfile
import uuid
from datetime import datetime
from pathlib import Path

from PySide6.QtCore import QPoint, Qt
from PySide6.QtGui import QPainter
from PySide6.QtTest import QTest
from PySide6.QtWidgets import QApplication, QWidget

from sas_desk.app import RunOptions, qt_turn, run
from sas_desk.models.search import Band
from sas_desk.services.config import Config
from sas_desk.ui.keys import type_text


async def settle(ms: int = 150) -> None:
    """Let the app run for a while (Qt events are handled by the running loop;
    never call processEvents() from a coroutine)."""
    await asyncio.sleep(ms / 1000)
    await qt_turn()


def save(widget: QWidget, out: Path, name: str) -> None:
    """Grab the window and paint open popups (completers) over it."""
    window = widget.window()
    picture = window.grab()
    painter = QPainter(picture)
    origin = window.mapToGlobal(QPoint(0, 0))
    for top in QApplication.topLevelWidgets():
        if top is not window and top.isVisible() and top.windowType() == Qt.WindowType.Popup:
            painter.drawPixmap(top.mapToGlobal(QPoint(0, 0)) - origin, top.grab())
    painter.end()
    path = out / f"{name}.png"
    picture.save(str(path))
    print(path)
    screen = window.screen().availableGeometry()
    if window.width() > screen.width() or window.height() > screen.height():
        print(
            f"  WIDER THAN THE SCREEN: {window.width()}x{window.height()} on {screen.width()}x{screen.height()}"
        )
        wide = sorted(
            (w for w in window.findChildren(QWidget) if w.isVisible()),
            key=lambda w: w.minimumSizeHint().width(),
            reverse=True,
        )
        for w in wide[:12]:
            text = w.text()[:50] if hasattr(w, "text") and callable(w.text) else ""
            print(
                f"    {w.minimumSizeHint().width():5d} {type(w).__name__} {w.objectName()} {text!r}"
            )


async def until(predicate, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not predicate():
        if loop.time() > end:
            raise TimeoutError("condition not met")
        await settle(30)


def make_first_run(out: Path):  # type: ignore[no-untyped-def]
    async def scenario(window) -> None:  # type: ignore[no-untyped-def]
        window.activateWindow()
        await settle(300)
        save(window, out, "01-role-picker")
        QTest.keyClick(window.picker, Qt.Key.Key_1)
        await settle()
        sheet = window.current_sheet()
        save(window, out, "02-new-call-sheet")
        type_text(sheet.callback, "06 12 34 56 7")
        sheet.callback.editingFinished.emit()
        sheet.location.setFocus()
        type_text(sheet.location, "12 rue de la Rép")
        await settle(600)
        save(window, out, "03-typing-address-suggestions")
        sheet._loc_completer.popup().hide()
        sheet.callback.setFocus()
        type_text(sheet.callback, "8")
        sheet.location.setFocus()
        sheet.location.selectAll()
        type_text(sheet.location, "12 rue de la République Lyon")
        await settle(600)
        first = sheet._loc_model.stringList()[0] if sheet._loc_model.stringList() else ""
        if first:
            sheet._on_place_chosen(first)
        sheet._loc_completer.popup().hide()
        type_text(sheet.floor, "3e")
        type_text(sheet.access_code, "4521B")
        sheet.motive.setFocus()
        type_text(sheet.motive, "douleur tho")
        await settle(200)
        save(window, out, "04-motive-type-ahead")
        sheet._motive_completer.popup().hide()
        type_text(sheet.motive, "")
        sheet.motive.setText("")
        type_text(sheet.motive, "M03.06")
        type_text(sheet.age, "67")
        QTest.keyClick(sheet.sex, Qt.Key.Key_H)
        QTest.keyClick(sheet.priority, Qt.Key.Key_1)
        QTest.keyClick(sheet.branch, Qt.Key.Key_A)
        sheet.note.setFocus()
        type_text(sheet.note, "Douleur constrictive depuis 30 min, sueurs.")
        QTest.keyClick(sheet.note, Qt.Key.Key_Return)
        type_text(sheet.note, "Antécédent d'infarctus en 2019.")
        QTest.keyClick(sheet.note, Qt.Key.Key_Return)
        await settle(300)
        save(window, out, "05-filled-call-sheet")
        # who the patient and the caller are, after the urgent part (Tab order)
        sheet.last_name.setFocus()
        type_text(sheet.last_name, "Lefèvre")
        QTest.keyClick(sheet.last_name, Qt.Key.Key_Tab)
        type_text(sheet.first_name, "Élise")
        QTest.keyClick(sheet.first_name, Qt.Key.Key_Tab)
        type_text(sheet.birth_date, "12/03/1959")
        QTest.keyClick(sheet.birth_date, Qt.Key.Key_Tab)
        sheet.caller_type.setCurrentIndex(sheet.caller_type.findData("FAMILLE"))
        sheet.caller_name.setFocus()
        type_text(sheet.caller_name, "Marc Lefèvre (fils)")
        sheet.language.setFocus()
        await settle(300)
        save(window, out, "05b-identity-fields")
        window.new_call()
        await settle()
        s2 = window.current_sheet()
        type_text(s2.callback, "0690 12 34")
        s2.callback.editingFinished.emit()
        type_text(s2.location, "4.8357, 45.7640")
        s2.location.editingFinished.emit()
        s2.transmit()
        await settle(300)
        save(window, out, "06-inline-validation")
        window.new_call()
        s3 = window.current_sheet()
        type_text(s3.callback, "04 75 12 34 56")
        s3.location.setFocus()
        type_text(s3.location, "Valence")
        s3.motive.setFocus()
        type_text(s3.motive, "M03.22")
        type_text(s3.age, "34")
        type_text(s3.priority, "2")
        s3.branch.setFocus()
        type_text(s3.branch, "d")
        s3.dental_reason.setCurrentIndex(s3.dental_reason.findData("DENT.CELLULITE"))
        s3.note.setFocus()
        type_text(s3.note, "Joue gonflée depuis hier, 39°C, avale difficilement.")
        await settle(300)
        save(window, out, "06b-dental-sheet-with-advice")
        s3.transmit()  # Valence is not the centre's département: confirmed on screen
        await settle(200)
        save(window, out, "06c-confirm-out-of-territory")
        QTest.keyClick(s3.confirm_button, Qt.Key.Key_Return)
        window.tabs.setCurrentIndex(0)
        sheet.transmit()
        await settle(200)
        if not sheet.confirm_bar.isHidden():
            # room mode has no demo geocoder: the address is not located and
            # the ARM confirms (this P1 is the supervisor's late call, below)
            QTest.keyClick(sheet.confirm_button, Qt.Key.Key_Return)
        # three more calls for the general-medicine regulators
        for n, (phone, place, motive, age, prio) in enumerate(
            [
                ("06 45 12 78 90", "Villeurbanne", "M03.14", "4", "2"),
                ("04 78 45 12 36", "Vénissieux", "M03.21", "81", "3"),
                ("07 12 45 78 96", "Bron", "M03.11", "35", "1"),
            ]
        ):
            window.new_call()
            sx = window.current_sheet()
            type_text(sx.callback, phone)
            sx.location.setFocus()
            type_text(sx.location, place)
            sx.motive.setFocus()
            type_text(sx.motive, motive)
            type_text(sx.age, age)
            sx.priority.setFocus()
            type_text(sx.priority, prio)
            type_text(sx.branch, "s")
            sx.transmit()
            await settle(50 + n)
        window.tabs.setCurrentIndex(0)
        await settle(300)
        save(window, out, "07-transmitted-and-day-list")
        await window.journal.flush(timeout=5)
        window.close()

    return scenario


def make_regulator(out: Path):  # type: ignore[no-untyped-def]
    async def scenario(window) -> None:  # type: ignore[no-untyped-def]
        window.activateWindow()
        await settle(500)
        panel = window.queue_panel
        save(window, out, "10-mrl-queue")
        first = panel.model.items()[0] if panel.model.items() else None
        if first is not None:
            panel.select(first.case_id)
            panel.act("claim")
            await settle(600)
            view = window.tabs.currentWidget()
            view.note.setFocus()
            type_text(view.note, "Fièvre 39,5 depuis 24 h, enfant tonique, boit bien.")
            view.add_note()
            await settle(300)
            view.care_level.setCurrentIndex(view.care_level.findData("R3"))
            view.decision_type.setCurrentIndex(view.decision_type.findData("ORIENT"))
            view.resource_type.setCurrentIndex(view.resource_type.findData("LIBERAL.MG"))
            view.orientation_type.setCurrentIndex(view.orientation_type.findData("CABINET"))
            view.decision_note.setText("Consultation MG sous 24 h")
            view.decide()
            await settle(600)
            save(window, out, "11-mrl-dossier-view-decision")
        last = panel.model.items()[-1] if len(panel.model.items()) > 1 else None
        if last is not None:  # one for the ARM to call back
            window.left_tabs.setCurrentWidget(panel)
            panel.select(last.case_id)
            panel.act("claim")
            await settle(600)
            panel.select(last.case_id)
            panel.act("hand_back")
            type_text(
                panel.hand_back_reason, "Rappeler : donner l'adresse de la maison médicale de garde"
            )
            panel.hand_back_reason.returnPressed.emit()
            await settle(400)
        window.close()

    return scenario


def make_supervisor(out: Path):  # type: ignore[no-untyped-def]
    async def scenario(window) -> None:  # type: ignore[no-untyped-def]
        window.activateWindow()
        await settle(600)
        save(window, out, "12-supervisor-queues")
        panel = window.queue_panel
        held = [i for i in panel.model.items() if i.claim is not None]
        if held:
            panel.tabs.setCurrentIndex(panel.queues.index(held[0].queue))
            panel.select(held[0].case_id)
            panel.act("claim")  # held by the MRL: refused, and said where the list is
            await settle(600)
            save(window, out, "12a-supervisor-claim-refused")
            panel.select(held[0].case_id)
            panel.act("reassign")
            await settle(200)
            save(window, out, "12b-supervisor-reassign")
        window.close()

    return scenario


def make_arm_queue(out: Path):  # type: ignore[no-untyped-def]
    async def scenario(window) -> None:  # type: ignore[no-untyped-def]
        window.activateWindow()
        await settle(500)
        if window.queue_panel is not None:
            window.left_tabs.setCurrentWidget(window.queue_panel)
        await settle(200)
        save(window, out, "13-arm-returns-queue")
        panel = window.queue_panel
        items = panel.model.items() if panel is not None else []
        if items:  # the ARM opens it: the sheet and the timeline, no decision form
            panel.select(items[0].case_id)
            panel.act("claim")
            await settle(800)
            save(window, out, "13b-arm-call-back-dossier")
        window.close()

    return scenario


def make_late(out: Path):  # type: ignore[no-untyped-def]
    """A supervisor whose waiting limits are short (P0/P1: 1 s): the P1
    still waiting raises the late banner; then an unexpected error in an
    operation shows the crash dialog."""

    async def scenario(window) -> None:  # type: ignore[no-untyped-def]
        from sas_desk.ui import crash
        from sas_desk.ui.operation import run_operation

        window.activateWindow()
        bar = window.escalation
        try:
            await until(lambda: bar is not None and not bar.isHidden(), 10)
        except TimeoutError:
            print("  no late P0/P1 waiting: the banner picture shows none")
        await settle(300)
        save(window, out, "12c-late-banner")

        async def broken() -> None:
            raise RuntimeError("démonstration : une erreur de programmation")

        run_operation(broken(), name="démonstration", show_error=print)
        await until(lambda: (d := crash.dialog()) is not None and d.isVisible(), 10)
        await settle(300)
        dialog = crash.dialog()
        assert dialog is not None
        save(dialog, out, "12d-crash-dialog")
        dialog.accept()
        window.close()

    return scenario


def make_restart(out: Path):  # type: ignore[no-untyped-def]
    async def scenario(window) -> None:  # type: ignore[no-untyped-def]
        await settle(300)
        save(window, out, "08-restart-resume-offer")
        window.resume_all()
        await settle(300)
        save(window, out, "09-resumed-sheet")
        window.close()

    return scenario


def _simulator():  # type: ignore[no-untyped-def]
    """The demo's simulator object (to inject a vendor fault for a picture)."""
    import gc

    from sas_desk.simulator.server import Simulator

    return next(o for o in gc.get_objects() if isinstance(o, Simulator) and o.running)


def make_osnp(out: Path):  # type: ignore[no-untyped-def]
    async def scenario(window) -> None:  # type: ignore[no-untyped-def]
        window.activateWindow()
        await settle(300)
        panel = window.slot_panel
        panel.open_url = lambda url: True  # no browser in a screenshot run
        await until(lambda: window.slot_source is not None and panel._source is not None, 60)
        panel.where.setFocus()
        type_text(panel.where, "20 rue de la République Lyon")
        await settle(700)
        save(window, out, "14-osnp-address-suggestions")
        first = panel._where_model.stringList()[0] if panel._where_model.stringList() else ""
        if first:
            panel._on_place_chosen(first)
        panel._completer.popup().hide()
        panel.start_search()
        await until(lambda: panel.last_update is not None and panel.last_update.done, 20)
        await until(lambda: panel.map is not None and panel.map.markers.rowCount() > 0, 10)
        panel.list.setFocus()
        await settle(400)
        save(window, out, "15-osnp-results-list-and-map")
        # the band of the soonest slot ("0-4 h" is empty at night)
        soonest = min(s.start for r in panel.model.rows() for s in r.slots)
        band = Band.of(soonest, datetime.now().astimezone()) or next(iter(panel.band_buttons))
        panel.band_buttons[band].setChecked(True)
        panel.sort.setCurrentIndex(1)
        panel.list.setFocus()
        await settle(400)
        save(window, out, "16-osnp-facet-soonest-band-by-distance")
        panel.band_buttons[band].setChecked(False)
        panel.sort.setCurrentIndex(0)
        simulator = _simulator()
        failing = window.slot_source.vendors[0].name
        simulator.set_faults(failing, "error:1:503")
        panel.start_search()
        await until(lambda: panel.last_update is not None and panel.last_update.done, 20)
        simulator.set_faults(failing, None)
        panel.list.setFocus()
        QTest.keyClick(panel.list, Qt.Key.Key_Right)
        QTest.keyClick(panel.list, Qt.Key.Key_Return)  # opens the booking page, asks
        await settle(400)
        save(window, out, "17-osnp-vendor-failing-and-booking-question")
        QTest.keyClick(panel.booking, Qt.Key.Key_N)
        panel.where.setFocus()
        panel.where.selectAll()
        type_text(panel.where, "45.7542, 4.7647")
        panel.radius.setValue(1)
        panel.start_search()
        await until(lambda: panel.last_update is not None and panel.last_update.done, 20)
        QTest.keyClick(panel, Qt.Key.Key_2, Qt.KeyboardModifier.AltModifier)
        QTest.keyClick(panel.volunteers, Qt.Key.Key_C)
        await settle(400)
        save(window, out, "18-osnp-few-results-volunteers-en-sus")
        window.close()

    return scenario


def _next_sunday() -> str:
    from datetime import date, timedelta

    today = date.today()
    return (today + timedelta(days=(6 - today.weekday()) % 7 or 7)).strftime("%d/%m/%Y")


def make_dental(out: Path):  # type: ignore[no-untyped-def]
    async def scenario(window) -> None:  # type: ignore[no-untyped-def]
        window.activateWindow()
        await settle(500)
        view = window.dental_view
        await until(lambda: view.service is not None, 20)
        panel = window.queue_panel
        dental = next((i for i in panel.model.items() if i.queue.value == "DENT"), None)
        if dental is not None:
            panel.select(dental.case_id)
            panel.act("claim")
            await settle(600)
            QTest.keyClick(window, Qt.Key.Key_D, Qt.KeyboardModifier.ControlModifier)
            await settle(300)
        view.when.setText(f"{_next_sunday()} 10:30")
        view.lookup()
        await until(lambda: view.last_lookup is not None and view.last_lookup.done(), 10)
        await settle(300)
        save(window, out, "19-dent-dossier-on-call-and-triage")
        if dental is not None:  # the dossier itself: its dental button
            dossier_view = window._dossier_view(dental.case_id)
            if dossier_view is not None:
                window.tabs.setCurrentWidget(dossier_view)
                await settle(300)
                save(window, out, "19b-dent-dossier-view-dental-button")
                window.tabs.setCurrentWidget(view)
        view.dossier = None
        view.dossier_label.hide()
        view.commune.setFocus()
        view.commune.setText("")
        type_text(view.commune, "Villeur")
        await settle(300)
        save(window, out, "20-dent-commune-suggestions")
        view._completer.popup().hide()
        view.commune.setText("Villeurbanne (69266)")
        view.when.setText(f"{_next_sunday()} 15:00")
        view.lookup()
        await until(lambda: view.last_lookup is not None and view.last_lookup.done(), 10)
        view.signs.set_signs(["trauma"], "2")
        view.on_call_table.setFocus()
        QTest.keyClick(view.on_call_table, Qt.Key.Key_C)
        await settle(300)
        save(window, out, "21-dent-trauma-on-call-phone-copied")
        family = view.on_call_table.entries[0].family if view.on_call_table.entries else "Fa"
        view.search.setFocus()
        type_text(view.search, family[:5])
        await until(lambda: view.last_search is not None and view.last_search.done(), 10)
        await settle(300)
        save(window, out, "22-dent-dentist-search")
        window.close()

    return scenario


STATIONS = [  # name, operator, role
    ("POSTE-ARM-03", "arm.durand", "ARM"),
    ("POSTE-MRL-07", "dr.martin", "MRL"),
    ("POSTE-SUP-01", "sup.bernard", "SUP"),
    ("POSTE-OSNP-02", "osnp.leroy", "OSNP"),
    ("POSTE-DENT-04", "dr.roux", "DENT"),
]


def main() -> None:
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "shots").resolve()
    out.mkdir(parents=True, exist_ok=True)
    dsn = os.environ.get("SAS_DESK_SHOTS_DSN", "")
    with tempfile.TemporaryDirectory(prefix="sas-desk-shots-") as tmp:
        if not dsn:
            _all_stations(out, Path(tmp), None)
            return
        from sas_desk.models.dossier import Actor
        from tests.integration.queues.room import RoomServer

        kind = "sqlite" if dsn.startswith("sqlite:") else "postgres"
        room = RoomServer(kind, dsn, f"shots_{uuid.uuid4().hex[:10]}", Path(tmp))
        try:
            room.start()
            room.add_accounts(Actor(role, op, name) for name, op, role in STATIONS)
            _all_stations(out, Path(tmp), room.url)
        finally:
            room.stop()
            if kind == "postgres":
                _drop_schema(dsn, room.schema)


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg
    from psycopg import sql

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def login_as(operator: str, role: str, out: Path | None = None):  # type: ignore[no-untyped-def]
    """Fill the login dialog; with ``out``, first show it refused (a wrong
    password, then a role the account does not have)."""
    from tests.integration.queues.room import PASSWORD

    async def fill(dialog, password: str, as_role: str) -> None:  # type: ignore[no-untyped-def]
        dialog.login.clear()
        type_text(dialog.login, operator)
        dialog.role.setCurrentIndex(dialog.role.findData(as_role))
        type_text(dialog.password, password)
        QTest.keyClick(dialog.password, Qt.Key.Key_Return)

    async def hook(dialog) -> None:  # type: ignore[no-untyped-def]
        await until(dialog.isVisible)
        await settle(200)
        if out is not None:
            type_text(dialog.login, operator)
            await settle()
            save(dialog, out, "00-login")
            await fill(dialog, "pas-le-bon", role)
            await until(lambda: dialog.error.isVisible() and not dialog.busy, 15)
            await settle()
            save(dialog, out, "00b-login-refused-password")
            await fill(dialog, PASSWORD, "SUP")
            await until(lambda: "SUP" in dialog.error.text() and not dialog.busy, 15)
            await settle()
            save(dialog, out, "00c-login-refused-role")
        await fill(dialog, PASSWORD, role)

    return hook


def _all_stations(out: Path, data: Path, room_url: str | None) -> None:
    def station(name: str, role: str | None) -> tuple[Config, RunOptions]:
        operator = next(op for n, op, _ in STATIONS if n == name)
        if room_url is None:
            return Config(
                data_dir=data, workstation=name, operator=operator, role=role
            ), RunOptions()
        config = Config(data_dir=data, workstation=name, room_url=room_url, demo=False)
        first = name == "POSTE-ARM-03" and role is None
        login = login_as(operator, role or "ARM", out if first else None)
        return config, RunOptions(on_login=login)

    def go(name: str, role: str | None, scenario, **settings) -> None:  # type: ignore[no-untyped-def]
        config, options = station(name, role)
        if settings:
            from dataclasses import replace

            config = replace(config, **settings)
        run(config, RunOptions(on_login=options.on_login, on_ready=scenario))

    # several workstations in turn on one data dir: they share its queue store
    go("POSTE-ARM-03", None, make_first_run(out))
    go("POSTE-ARM-03", "ARM", make_restart(out))
    go("POSTE-MRL-07", "MRL", make_regulator(out))
    go("POSTE-SUP-01", "SUP", make_supervisor(out))
    go("POSTE-SUP-01", "SUP", make_late(out), wait_limits=(1.0, 1.0, 1200.0, 3600.0))
    go("POSTE-ARM-03", "ARM", make_arm_queue(out))
    if room_url is not None:  # production mode has no demo simulator (vendors, roster)
        print("room mode: the OSNP's and the dentist's pictures need the demo simulator")
        return
    go("POSTE-OSNP-02", "OSNP", make_osnp(out))
    go("POSTE-DENT-04", "DENT", make_dental(out))


if __name__ == "__main__":
    main()
