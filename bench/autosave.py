"""Autosave under fast typing: 1,000 keystrokes into a call sheet of the real app.

    python bench/autosave.py [--edits N] [--interval-ms MS] [--schedule] [--display]
                             [--sealed-only | --sqlcipher]

Starts SAS Desk through its composition root (``sas_desk.app.run``) on a
temporary data dir (a real SQLite journal on disk), with the ARM role
preset so that a new call sheet is open.  The scenario types single
keystrokes (real key events, ``sas_desk.ui.keys.type_text``) spread over the
callback number, the location, the motive, the age and the note, French
accents included, with an ``await asyncio.sleep(0.008)`` after each keystroke
like a (very) fast typist (``--schedule``: a fixed rate instead, one keystroke
due every 8 ms), then waits for the journal, checks the stored dossier and
closes the window.

Measures:

* edit-to-durable latency of every keystroke (p50, p95, p99, max), goal
  p99 ≤ 50 ms;
* the longest event-loop stall: a 5 ms QTimer heartbeat runs during the
  whole scenario; stall = largest gap between two ticks minus 5 ms, goal
  ≤ 30 ms; that gap split into the GUI thread's own CPU, its wait for a CPU
  (schedstat) and the rest (blocked: GIL, locks, I/O), and the longest
  stretch of the GUI thread's own CPU between two ticks (what the stall
  would be on an idle machine);
* the number of journal writes (how much the autosave coalesced);
* that the stored dossier's ``inputs`` equal what is on screen.

The journal is sealed at rest (AES-GCM per record, ``services/atrest.py``):
the scenario runs four times, each in a fresh process, clear/sealed/sealed/
clear (the clear journal is the baseline, a bench-only switch), and the best
run of each mode is printed side by side with the ratio (``--sealed-only``: the sealed run alone).  The
sealed run also checks that no typed text is in the journal's file bytes.

``--sqlcipher`` (issue 15: "measure both and say why") adds the other way
of encrypting at rest: the same journal, its records in the clear, in a
file encrypted page by page by SQLCipher (``PRAGMA key`` with a raw 256-bit
key: no key derivation at open, like our AES-GCM key).  It needs a binding
that is not a dependency of the project, installed aside::

    pip install --target /tmp/sqlc sqlcipher3-wheels
    PYTHONPATH=$PWD:/tmp/sqlc python bench/autosave.py --sqlcipher

The runs go clear / AES-GCM / SQLCipher / SQLCipher / AES-GCM / clear, and
then the journal's write pattern alone, without the window (``--mode
store:…``, one fresh process per mode): one committed write (``synchronous
=FULL``, an fsync) of a 2 KB dossier snapshot per keystroke, the autosave's
worst case when nothing coalesces, p50/p99 per write.  Without
the binding the SQLCipher runs are left out and the summary says so.

Exit code 0 when the run completed (goals met or not: it is a measurement),
1 when it failed (exception, keystroke lost, stored dossier wrong).  The last
line is ``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

GOAL_P99_MS = 50.0
GOAL_STALL_MS = 30.0
HEARTBEAT_MS = 5
FIELDS = ("callback", "location", "motive", "age", "note")

# What the typist types, cycling through the list until the edit budget is
# spent.  ``replace`` selects the field's text first, so the first keystroke
# overwrites it (a correction: still one edit); otherwise the text is appended.
SCRIPT: tuple[tuple[str, str, bool], ...] = (
    ("callback", "06 12 34 56 78", True),
    ("location", "12 rue de la République, Lyon", True),
    ("motive", "douleur thoracique", True),
    ("age", "67", True),
    ("note", "Douleur constrictive depuis 30 min, sueurs, nausées. ", False),
    ("location", " — bâtiment B, 3e étage, près de l'église Saint-Pothin", False),
    ("motive", "M03.06", True),
    ("age", " ans", False),
    ("note", "Épouse présente ; patient conscient, très pâle, respire à 24/min. ", False),
    ("callback", "04 78 12 90 55", True),
    ("location", "8 place Bellecour, Lyon 2e", True),
    ("age", "8 mois", True),
    ("motive", "fièvre enfant", True),
    (
        "note",
        "Antécédent d'infarctus en 2019, traité par aspirine ; allergie à la pénicilline. ",
        False,
    ),
)


def plan(edits: int) -> list[tuple[str, str, bool]]:
    """``edits`` keystrokes: (field, character, select-all before it)."""
    out: list[tuple[str, str, bool]] = []
    while len(out) < edits:
        for name, text, replace in SCRIPT:
            for i, ch in enumerate(text):
                out.append((name, ch, replace and i == 0))
                if len(out) == edits:
                    return out
    return out


def percentile(sorted_values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an already sorted list."""
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


@dataclass
class Measure:
    edits: int
    interval_s: float
    key_times: list[float] = field(default_factory=list)  # monotonic time of each keystroke
    key_done: list[float] = field(default_factory=list)  # ... once its key events were handled
    key_revisions: list[int] = field(default_factory=list)  # dossier revision it produced
    durable_at: list[float | None] = field(default_factory=list)
    writes: int = 0  # successful journal writes that carried the sheet
    other_writes: int = 0  # successful writes without it (e.g. events only)
    failed_writes: list[str] = field(default_factory=list)
    ticks: list[float] = field(default_factory=list)  # heartbeat tick times
    tick_cpu: list[float] = field(default_factory=list)  # GUI thread's CPU time at each tick
    tick_edit: list[int] = field(default_factory=list)  # keystrokes sent when each tick fired
    tick_wait: list[float] = field(default_factory=list)  # GUI thread's run-queue wait at each tick
    worst_gap_at_edit: int = -1
    typing_s: float = 0.0
    lateness: list[float] = field(default_factory=list)  # keystroke sent - keystroke due
    flush_ok: bool = False
    stored_ok: bool = False
    stored_detail: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    case_id: str = ""
    clear_in_file: bool = False  # typed text found in the journal's file bytes
    cpu_s: float = 0.0  # this process's CPU time (all its threads) while typing
    machine_busy: float | None = None  # share of the machine's CPUs busy while typing
    load_before: float | None = None  # 1-min load average when typing began
    gui_wait_s: float | None = None  # GUI thread runnable but waiting for a CPU, while typing
    threads_wait_s: float | None = None  # ... summed over all the process's threads
    seals: int = 0  # records sealed (AES-GCM) during the run
    seals_on_gui_thread: int = 0  # ... of which on the GUI thread (must be 0)
    stall_cpu_ms: float = float("nan")  # GUI thread's CPU inside the longest stall
    slice_ms: float = float("nan")  # longest GUI-thread CPU between two heartbeat ticks


def make_scenario(m: Measure, interval_s: float, schedule: bool):  # type: ignore[no-untyped-def]
    async def scenario(window: Any) -> None:
        from PySide6.QtCore import Qt, QTimer

        from sas_desk.services.journal.service import SaveState
        from sas_desk.ui.keys import type_text

        # ---- heartbeat: runs during the whole scenario ------------------------
        heartbeat = QTimer()
        heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
        heartbeat.setInterval(HEARTBEAT_MS)
        edit_at_tick: list[int] = []  # keystrokes sent when each tick fired

        schedstat = Path("/proc/thread-self/schedstat")

        def tick() -> None:
            m.ticks.append(time.monotonic())
            m.tick_cpu.append(time.thread_time())  # the GUI thread's own CPU, not the wait
            try:  # ... and its wait for a CPU (Linux), to split a stall
                m.tick_wait.append(float(schedstat.read_text().split()[1]) / 1e9)
            except (OSError, ValueError, IndexError):
                pass
            edit_at_tick.append(len(m.key_times))

        heartbeat.timeout.connect(tick)
        heartbeat.start()
        tick()
        try:
            window.activateWindow()
            await asyncio.sleep(0.2)  # let the window settle (first paint, layouts)
            sheet = window.current_sheet()
            if sheet is None:
                raise RuntimeError("the ARM role did not open a call sheet")
            case_id = sheet.dossier.case_id
            m.case_id = case_id
            widgets = {name: getattr(sheet, name) for name in FIELDS}

            # ---- edit-to-durable rule ------------------------------------------
            # Every keystroke bumps the dossier's revision (CallSheet._on_text ->
            # Desk.touch) and submits a snapshot; we record the revision it
            # produced.  The journal writes the *latest* snapshot of the dossier
            # taken when the write began, and reports it in SaveState.saved as
            # (case_id, revision).  So a successful write that reports revision R
            # makes durable exactly the keystrokes whose revision is ≤ R, i.e.
            # every keystroke made before that write began, and they are durable
            # when the listener is called (time T, right after the commit).
            # latency = T - keystroke time.
            # (max(state.submitted) would be wrong here: the journal keeps the
            # time of the *first* unsaved edit of a dossier, so it would leave the
            # later keystrokes of the same batch to the next write and overstate
            # their latency.  We use it only as a consistency check.)
            pointer = 0

            def on_save(state: SaveState) -> None:
                nonlocal pointer
                now = time.monotonic()
                if not state.ok:
                    m.failed_writes.append(f"{state.reason}: {state.message_fr}")
                    return
                revision = dict(state.saved).get(case_id)
                if revision is None:
                    m.other_writes += 1
                    return
                m.writes += 1
                first = pointer
                while pointer < len(m.key_revisions) and m.key_revisions[pointer] <= revision:
                    m.durable_at[pointer] = now
                    pointer += 1
                # consistency: the journal reports, for the dossier, the time of
                # its first edit this write covers.  That edit is not always a
                # keystroke: the sheet edits the dossier by itself too (e.g.
                # CallSheet._settle_motive once the motive is typed), so it may
                # fall between the last keystroke of the previous write and the
                # first keystroke of this one -- but never before the previous
                # write's last keystroke was handled (that write's snapshot,
                # taken later, held it), nor after this write's first keystroke
                # was handled (its submit happened then).
                if pointer > first and len(state.submitted) >= len(state.saved):
                    submitted = state.submitted[[c for c, _ in state.saved].index(case_id)]
                    after = m.key_done[first - 1] if first else -math.inf
                    if not after < submitted <= m.key_done[first]:
                        m.errors.append(
                            f"write #{m.writes}: the dossier's submit time "
                            f"({submitted - m.key_times[first]:+.4f} s from keystroke "
                            f"#{first + 1}) is outside ]end of keystroke #{first}, end of "
                            f"keystroke #{first + 1}]: the first edit it covers is misattributed"
                        )

            window.journal.add_listener(on_save)

            # ---- typing ---------------------------------------------------------
            # Default pacing: ``await asyncio.sleep(interval)`` after each
            # keystroke (the loop runs meanwhile: repaint, journal, timers), so
            # the real interval is the pause plus the app's own work per key.
            # --schedule: keystroke i is due at start + i * interval whatever the
            # app does (a fixed rate); we sleep until then, or only yield when
            # the app has fallen behind, and record how late each key was sent.
            current = ""
            busy_before = machine_ticks()
            m.load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
            cpu_before = time.process_time()
            wait_before = run_queue_wait()
            start = time.monotonic()
            for i, (name, ch, replace) in enumerate(plan(m.edits)):
                if schedule:
                    due = start + i * interval_s
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                    m.lateness.append(time.monotonic() - due)
                elif i:
                    await asyncio.sleep(interval_s)
                widget = widgets[name]
                if name != current:
                    if current:
                        hide_popup(widgets[current])  # as Tab would
                    widget.setFocus()
                    current = name
                if replace:
                    widget.selectAll()
                before = sheet.dossier.revision
                m.key_times.append(time.monotonic())
                type_text(widget, ch)
                m.key_done.append(time.monotonic())
                m.key_revisions.append(sheet.dossier.revision)
                m.durable_at.append(None)
                if sheet.dossier.revision == before:
                    m.errors.append(f"keystroke {len(m.key_times)} ({ch!r} in {name}) made no edit")
            m.typing_s = time.monotonic() - start
            m.cpu_s = time.process_time() - cpu_before
            wait_after = run_queue_wait()
            if wait_before is not None and wait_after is not None:
                m.gui_wait_s = wait_after[0] - wait_before[0]
                m.threads_wait_s = sum(
                    w - wait_before[1].get(tid, 0.0) for tid, w in wait_after[1].items()
                )
            busy_after = machine_ticks()
            if busy_before and busy_after and busy_after[1] > busy_before[1]:
                m.machine_busy = (busy_after[0] - busy_before[0]) / (busy_after[1] - busy_before[1])
            hide_popup(widgets[current])

            m.flush_ok = await window.journal.flush(timeout=10)
            await asyncio.sleep(0.2)  # trailing work (geocoding timer, repaint)
            heartbeat.stop()
            tick()

            # ---- what is on disk -------------------------------------------------
            on_screen = {name: w.text() for name, w in widgets.items()}
            await check_stored(m, window.journal, case_id, on_screen, sheet.dossier.revision)
        except Exception:
            m.errors.append("scenario failed:\n" + traceback.format_exc())
        finally:
            heartbeat.stop()
            gaps = [b - a for a, b in itertools.pairwise(m.ticks)]
            if gaps:
                worst = max(range(len(gaps)), key=gaps.__getitem__)
                m.worst_gap_at_edit = edit_at_tick[worst + 1]
            m.tick_edit = edit_at_tick
            window.close()

    return scenario


def machine_ticks() -> tuple[int, int] | None:
    """(busy, total) jiffies of all the machine's CPUs (Linux), else None."""
    try:
        values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    idle = values[3] + (values[4] if len(values) > 4 else 0)  # idle + iowait
    return sum(values) - idle, sum(values)


def run_queue_wait() -> tuple[float, dict[str, float]] | None:
    """Seconds this thread (the GUI thread when called from the scenario) and
    each of the process's threads spent runnable but waiting for a CPU (Linux
    schedstat): what the other processes on the machine cost us."""
    try:
        mine = float(Path("/proc/thread-self/schedstat").read_text().split()[1]) / 1e9
        threads: dict[str, float] = {}
        for task in Path("/proc/self/task").iterdir():
            try:
                threads[task.name] = float((task / "schedstat").read_text().split()[1]) / 1e9
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended meanwhile
    except (OSError, ValueError, IndexError):
        return None
    return mine, threads


def count_seals(m: Measure) -> None:
    """Count the records sealed and those sealed on the GUI thread (which only
    paints): sealing belongs to the journal's and the outbox's threads."""
    import threading

    try:
        from sas_desk.services.atrest import RecordCipher
    except ImportError:  # a tree from before sealing at rest
        return
    original = RecordCipher.seal

    def seal(self: Any, text: str, aad: str) -> str:
        m.seals += 1
        if threading.current_thread() is threading.main_thread():
            m.seals_on_gui_thread += 1
        return original(self, text, aad)

    RecordCipher.seal = seal  # type: ignore[method-assign]


def has_sealing() -> bool:
    """Whether this tree seals the journal (older commits, run by
    scripts/bench_ab.py, do not: their journal is clear in every mode)."""
    import dataclasses

    from sas_desk.app import RunOptions

    return "unsealed_for_bench" in {f.name for f in dataclasses.fields(RunOptions)}


def hide_popup(widget: Any) -> None:
    completer = widget.completer()
    if completer is not None and completer.popup().isVisible():
        completer.popup().hide()


async def check_stored(
    m: Measure, journal: Any, case_id: str, on_screen: dict[str, str], revision: int
) -> None:
    """What the journal holds (read back through it: sealed records opened
    with the workstation's key) equals the screen; and, sealed, the typed
    text is nowhere in the journal's files."""
    stored = await journal.load(case_id)
    if stored is None:
        m.stored_detail.append(f"dossier {case_id} not found in {journal.path}")
        return
    inputs = stored.inputs
    ok = True
    for name, text in on_screen.items():
        got = inputs.get(name)
        if got != text:
            ok = False
            m.stored_detail.append(f"{name}: stored {got!r} != screen {text!r}")
    if stored.revision != revision:
        ok = False
        m.stored_detail.append(f"revision: stored {stored.revision} != sheet {revision}")
    raw = b"".join(
        p.read_bytes() for p in journal.path.parent.glob(journal.path.name + "*") if p.is_file()
    )
    m.clear_in_file = any(
        len(text) >= 6 and text.encode("utf-8") in raw for text in on_screen.values()
    )
    m.stored_ok = ok
    m.stored_detail.append(f"stored revision {stored.revision}; fields on screen:")
    m.stored_detail.extend(f"  {name:9} {text!r}" for name, text in on_screen.items())


def log_problems(data_dir: Path) -> list[str]:
    log_file = data_dir / "logs" / "sas-desk.log"
    if not log_file.exists():
        return []
    lines = log_file.read_text(encoding="utf-8").splitlines()
    return [
        line
        for line in lines
        if any(f" {lvl} " in line for lvl in ("WARNING", "ERROR", "CRITICAL"))
    ]


# Qt warnings that only say the offscreen platform cannot do window-manager
# things (same list as pytest's qt_log_ignore in pyproject.toml)
QT_NOISE = re.compile(
    r"This plugin does not support (propagateSizeHints\(\)|raise\(\)|grabbing the (keyboard|mouse))"
)


def install_qt_message_handler(messages: list[str]) -> None:
    from PySide6.QtCore import QtMsgType, qInstallMessageHandler

    def handler(kind: QtMsgType, _context: object, text: str) -> None:
        if kind in (QtMsgType.QtDebugMsg, QtMsgType.QtInfoMsg) or QT_NOISE.search(text):
            return
        messages.append(f"{kind.name}: {text}")

    qInstallMessageHandler(handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--edits", type=int, default=1000, help="keystrokes (default 1000)")
    parser.add_argument(
        "--interval-ms", type=float, default=8.0, help="keystroke pacing in ms (default 8)"
    )
    parser.add_argument(
        "--schedule",
        action="store_true",
        help="fixed rate: keystroke i due at i × interval (default: pause interval after each)",
    )
    parser.add_argument(
        "--display", action="store_true", help="use $DISPLAY instead of the offscreen platform"
    )
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument(
        "--sealed-only",
        action="store_true",
        help="only the encrypted journal (default: the clear one too, side by side)",
    )
    parser.add_argument(
        "--sqlcipher",
        action="store_true",
        help="also the journal in a SQLCipher file (needs the sqlcipher3 binding, see above)",
    )
    parser.add_argument(
        "--store-writes",
        type=int,
        default=300,
        help="committed writes per mode in the write-pattern measure (default 300)",
    )
    args = parser.parse_args(argv)
    if args.edits < 1:
        parser.error("--edits must be positive")
    if args.interval_ms < 0:
        parser.error("--interval-ms cannot be negative")
    if args.display and os.environ.get("DISPLAY"):
        os.environ.pop("QT_QPA_PLATFORM", None)
        platform = f"display {os.environ['DISPLAY']}"
    else:
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        platform = "offscreen"

    # the data key goes to a file beside the temporary data dir, not to this
    # user's keyring (nothing left behind)
    os.environ.setdefault("PYTHON_KEYRING_BACKEND", "keyring.backends.null.Keyring")
    if args.mode and args.mode.startswith("store:"):
        result = store_run(args.mode[len("store:") :], args.store_writes)
        print("RESULT " + json.dumps(result))
        return 0
    if args.mode:  # one run in this process (the parent runs each mode in a fresh one)
        if args.mode == "sqlcipher":
            print(f"journal file: SQLCipher {use_sqlcipher()} (records in the clear inside)")
        result, errors = one_run(args, platform, sealed=args.mode != "clair")
        result["mode"] = args.mode
        print("RESULT " + json.dumps(result))
        return 1 if errors else 0
    # ABBA order, each run in a fresh process (a second app run in one process
    # is slower: measured), the best run of each mode compared (the machine is
    # shared: the least disturbed run of each)
    sealing = has_sealing()
    modes: tuple[str, ...] = (
        ("clair", "chiffré", "chiffré", "clair") if not args.sealed_only else ("chiffré",)
    )
    binding = sqlcipher_binding() if args.sqlcipher else None
    if args.sqlcipher and binding is None:
        print(
            "--sqlcipher: no SQLCipher binding importable here (pip install --target DIR "
            "sqlcipher3-wheels, then PYTHONPATH=DIR): SQLCipher not measured"
        )
    elif args.sqlcipher:
        print(f"--sqlcipher: {binding}")
        modes = ("clair", "chiffré", "sqlcipher", "sqlcipher", "chiffré", "clair")
    if not sealing:  # an older tree (scripts/bench_ab.py --base): its journal is always clear
        print("this tree does not seal its journal: clear journal only")
        modes = ("clair", "clair")
    runs: dict[str, list[dict[str, Any]]] = {}
    failed = False
    passed_on = [
        a
        for a in (argv if argv is not None else sys.argv[1:])
        if a not in ("--sealed-only", "--sqlcipher")
    ]
    for n, mode in enumerate(modes, start=1):
        print(f"\n=== run {n}/{len(modes)}: journal {mode} ===", flush=True)
        child = subprocess.run(
            [sys.executable, __file__, *passed_on, "--mode", mode],
            capture_output=True,
            text=True,
            timeout=900,
        )
        lines = child.stdout.splitlines()
        print("\n".join(line for line in lines if not line.startswith("RESULT ")))
        found = [line for line in lines if line.startswith("RESULT ")]
        if not found:
            print(child.stderr[-2000:])
            print(f"ERROR: run {n} gave no RESULT (exit {child.returncode})")
            return 1
        runs.setdefault(mode, []).append(json.loads(found[-1][len("RESULT ") :]))
        failed = failed or child.returncode != 0

    def best(mode: str) -> dict[str, Any]:
        return min(runs[mode], key=lambda r: r["p99_ms"] if r["p99_ms"] is not None else 1e9)

    sealed = best("chiffré") if "chiffré" in runs else None
    plain = best("clair") if "clair" in runs else None
    main_run = sealed if sealed is not None else plain
    assert main_run is not None
    print("\n=== runs ===")
    for mode, done in runs.items():
        for r in done:
            print(
                f"{mode:8}: p99 {r['p99_ms']} ms, stall {r['stall_ms']} ms, "
                f"CPU {r['cpu_ms']} ms for {r['typing_ms']} ms of typing, "
                f"machine busy {r['machine_busy_pct']} %, load {r['load_before']}, "
                f"GUI thread waited for a CPU {r.get('gui_wait_ms')} ms, "
                f"its own CPU in the longest stall {r.get('stall_gui_cpu_ms')} ms, "
                f"longest own slice {r.get('gui_slice_max_ms')} ms"
            )
    if plain is not None and sealed is not None:
        print("\n=== chiffré (AES-GCM par enregistrement) vs clair, meilleur run de chaque ===")
        for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "stall_ms"):
            a, b = sealed[key], plain[key]
            ratio = f"{a / b:.2f}×" if a is not None and b else "n/a"
            print(f"{key:9}: chiffré {a} ms, clair {b} ms, ratio {ratio}")
    cipher_run = best("sqlcipher") if "sqlcipher" in runs else None
    if cipher_run is not None and plain is not None and sealed is not None:
        print("\n=== SQLCipher (fichier chiffré par page) vs AES-GCM vs clair, meilleur run ===")
        for key in ("p50_ms", "p95_ms", "p99_ms", "max_ms", "stall_ms", "cpu_ms"):
            c, a, b = cipher_run[key], sealed[key], plain[key]
            print(
                f"{key:9}: SQLCipher {c}, AES-GCM {a}, clair {b}; "
                f"SQLCipher/clair {_ratio(c, b)}, AES-GCM/clair {_ratio(a, b)}, "
                f"SQLCipher/AES-GCM {_ratio(c, a)}"
            )
    writes: dict[str, dict[str, Any]] = {}
    if binding is not None and sealing:
        print(f"\n=== the journal's write pattern alone: {args.store_writes} committed writes ===")
        for mode in ("clair", "chiffré", "sqlcipher", "sqlcipher", "chiffré", "clair"):
            child = subprocess.run(
                [sys.executable, __file__, *passed_on, "--mode", f"store:{mode}"],
                capture_output=True,
                text=True,
                timeout=900,
            )
            found = [ln for ln in child.stdout.splitlines() if ln.startswith("RESULT ")]
            if not found:
                print(child.stderr[-2000:])
                print(f"ERROR: store:{mode} gave no RESULT (exit {child.returncode})")
                return 1
            got = json.loads(found[-1][len("RESULT ") :])
            print(
                f"{mode:9}: p50 {got['p50_ms']} ms, p99 {got['p99_ms']} ms, max {got['max_ms']} ms, "
                f"CPU {got['cpu_us_per_write']} µs per write, file {got['file_kb']} KB, "
                f"load {got['load']}"
            )
            kept = writes.get(mode)
            if kept is None or got["p99_ms"] < kept["p99_ms"]:
                writes[mode] = got
        c, a, b = (writes[k] for k in ("sqlcipher", "chiffré", "clair"))
        for key in ("p50_ms", "p99_ms", "cpu_us_per_write"):
            print(
                f"best {key:16}: SQLCipher {c[key]}, AES-GCM {a[key]}, clair {b[key]}; "
                f"SQLCipher/clair {_ratio(c[key], b[key])}, AES-GCM/clair {_ratio(a[key], b[key])}"
            )
    seal_us = seal_cost_us() if sealing else None
    if seal_us is not None:
        print(
            f"\nseal alone (same machine, now): {seal_us:.1f} µs per 2 KB record "
            "(AES-256-GCM + base64), against the ms above"
        )
    summary = {
        # the best run's figures at the top level (scripts/bench_ab.py --keys):
        # the sealed journal's, or the clear one's in a tree without sealing
        **{
            k: main_run[k]
            for k in (
                "p50_ms",
                "p99_ms",
                "max_ms",
                "stall_ms",
                "cpu_ms",
                "machine_busy_pct",
                "gui_wait_ms",
                "stall_gui_cpu_ms",
                "gui_slice_max_ms",
            )
        },
        "seal_us_per_record": None if seal_us is None else round(seal_us, 1),
        "sealed": sealed,
        "plain": plain,
        "ratio_p99": (
            round(sealed["p99_ms"] / plain["p99_ms"], 2)
            if plain is not None and sealed is not None and sealed["p99_ms"] and plain["p99_ms"]
            else None
        ),
        "runs": {mode: [r["p99_ms"] for r in done] for mode, done in runs.items()},
        "pass": main_run["pass"],
    }
    if args.sqlcipher:
        summary["sqlcipher_binding"] = binding
        summary["sqlcipher"] = cipher_run
        summary["ratio_p99_sqlcipher"] = (
            round(cipher_run["p99_ms"] / plain["p99_ms"], 2)
            if cipher_run is not None and plain is not None and plain["p99_ms"]
            else None
        )
        summary["store_writes"] = writes or None
    print("RESULT " + json.dumps(summary))
    return 1 if failed else 0


MODES = ("clair", "chiffré", "sqlcipher", "store:clair", "store:chiffré", "store:sqlcipher")


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}×" if a is not None and b else "n/a"


def sqlcipher_binding() -> str | None:
    """The SQLCipher binding's versions, or None when none is importable."""
    try:
        from sqlcipher3 import dbapi2
    except ImportError:
        return None
    conn = dbapi2.connect(":memory:")
    try:
        version = conn.execute("PRAGMA cipher_version").fetchone()
    finally:
        conn.close()
    return (
        f"sqlcipher3 (SQLCipher {version[0] if version else '?'}, SQLite {dbapi2.sqlite_version})"
    )


def use_sqlcipher() -> str:
    """The journal's SQLite module swapped for SQLCipher's (same DB-API, its
    own exception classes, so the journal's error handling still applies):
    every connection keyed first with a raw 256-bit key."""
    import types

    from sqlcipher3 import dbapi2

    import sas_desk.services.journal.store as store

    key = os.urandom(32).hex()

    def connect(*args: Any, **kwargs: Any) -> Any:
        conn = dbapi2.connect(*args, **kwargs)
        conn.execute(f"PRAGMA key = \"x'{key}'\"")
        return conn

    shim = types.ModuleType("sqlite3")
    shim.__dict__.update({k: v for k, v in vars(dbapi2).items() if not k.startswith("__")})
    shim.connect = connect  # type: ignore[attr-defined]
    store.sqlite3 = shim  # type: ignore[attr-defined]
    return sqlcipher_binding() or "?"


def store_run(mode: str, writes: int) -> dict[str, Any]:
    """The journal's write pattern without the window: ``writes`` committed
    writes of a 2 KB dossier snapshot (what an autosave writes), each its
    own transaction, through :class:`JournalStore` itself."""
    from datetime import UTC, datetime

    from sas_desk.models.dossier import Actor, Dossier, Event, EventKind
    from sas_desk.services.atrest import RecordCipher
    from sas_desk.services.journal.store import JournalStore

    if mode == "sqlcipher":
        use_sqlcipher()
    cipher = RecordCipher(os.urandom(32)) if mode == "chiffré" else None
    now = datetime(2026, 12, 7, 18, 0, tzinfo=UTC)
    actor = Actor("ARM", "bench", "BENCH")
    d = Dossier("fr.health.samu690.DRM.20261207.00001", now, "fr.health.samu690")
    times: list[float] = []
    with tempfile.TemporaryDirectory(prefix="sas-desk-store-") as tmp:
        path = Path(tmp) / "journal.sqlite"
        journal = JournalStore(path, now=lambda: now, cipher=cipher)
        note = "Douleur constrictive depuis 30 min, sueurs, nausées. " * 36
        cpu0 = time.process_time()
        for i in range(writes):
            d.inputs = {"note": note[: 1900 + i % 100], "callback": "06 12 34 56 78"}
            d.revision = i + 1
            events = [Event(d.case_id, now, EventKind.CREATED, actor, {})] if i == 0 else []
            start = time.perf_counter()
            journal.write([d.to_dict()], events)
            times.append((time.perf_counter() - start) * 1000)
        cpu = time.process_time() - cpu0
        size = sum(p.stat().st_size for p in Path(tmp).glob("journal.sqlite*"))
        stored = journal.load(d.case_id)
        journal.close()
        raw = b"".join(p.read_bytes() for p in Path(tmp).glob("journal.sqlite*"))
    times.sort()
    return {
        "mode": mode,
        "writes": writes,
        "p50_ms": round(percentile(times, 50), 2),
        "p99_ms": round(percentile(times, 99), 2),
        "max_ms": round(times[-1], 2),
        "cpu_us_per_write": round(cpu / writes * 1e6),
        "file_kb": round(size / 1024),
        "read_back": stored is not None and stored.revision == writes,
        "clear_in_file": b"Douleur constrictive" in raw,
        "load": round(os.getloadavg()[0], 2),
    }


def seal_cost_us(records: int = 2000) -> float:
    """What sealing costs by itself: one 2 KB dossier-like JSON record."""
    from sas_desk.services.atrest import RecordCipher

    cipher = RecordCipher(bytes(32))
    text = json.dumps(
        {"inputs": {"note": "Douleur constrictive, sueurs. " * 40}}, ensure_ascii=False
    )
    best = math.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(records):
            cipher.seal(text, "fr.health.samu690.DRM.20261207.00001")
        best = min(best, (time.perf_counter() - start) / records * 1e6)
    return best


def one_run(
    args: argparse.Namespace, platform: str, *, sealed: bool
) -> tuple[dict[str, Any], list[str]]:
    from sas_desk.app import RunOptions, run, setup_logging
    from sas_desk.services.config import Config

    m = Measure(args.edits, args.interval_ms / 1000)
    unhandled: list[str] = []
    qt_messages: list[str] = []

    def hook(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        # exceptions raised in Qt slots end here; the app goes on, the bench must not miss them
        unhandled.append("".join(traceback.format_exception(kind, exc, tb)))

    sys.excepthook = hook
    install_qt_message_handler(qt_messages)
    count_seals(m)
    # SQLCipher: the file is encrypted, its records are not sealed again
    records_sealed = sealed and args.mode != "sqlcipher"
    options: dict[str, Any] = {"unsealed_for_bench": not records_sealed} if has_sealing() else {}
    with tempfile.TemporaryDirectory(prefix="sas-desk-autosave-") as tmp:
        data_dir = Path(tmp) / "data"  # the key file (no keyring) lands beside it, in tmp
        setup_logging(data_dir)  # the app's own log file, scanned for warnings below
        config = Config(data_dir=data_dir, role="ARM", workstation="BENCH", operator="bench")
        print(f"platform : {platform}")
        print(f"journal  : {config.journal_path}")
        print(
            f"workload : {args.edits} keystrokes, "
            + (
                f"one due every {args.interval_ms:g} ms (fixed schedule)"
                if args.schedule
                else f"{args.interval_ms:g} ms asyncio.sleep after each"
            )
        )
        try:
            code = run(
                config,
                RunOptions(
                    on_ready=make_scenario(m, m.interval_s, args.schedule),
                    **options,
                ),
            )
        except Exception:
            code = -1
            m.errors.append("run() raised:\n" + traceback.format_exc())
        problems = log_problems(data_dir)
    sys.excepthook = sys.__excepthook__

    lost = [i for i, t in enumerate(m.durable_at) if t is None]
    latencies = sorted(
        (t - k) * 1000 for k, t in zip(m.key_times, m.durable_at, strict=True) if t is not None
    )
    gaps = [b - a for a, b in itertools.pairwise(m.ticks)]
    stall_ms = max(0.0, max(gaps, default=0.0) * 1000 - HEARTBEAT_MS)
    if code != 0:
        m.errors.append(f"run() returned {code}")
    if len(m.key_times) != m.edits:
        m.errors.append(f"only {len(m.key_times)} of {m.edits} keystrokes were typed")
    if lost:
        m.errors.append(f"{len(lost)} keystroke(s) never became durable (first: #{lost[0] + 1})")
    if not m.flush_ok:
        m.errors.append("journal.flush(timeout=10) timed out")
    if m.seals_on_gui_thread:
        m.errors.append(f"{m.seals_on_gui_thread} of {m.seals} records sealed on the GUI thread")
    if m.failed_writes:
        m.errors.append(f"{len(m.failed_writes)} failed write(s): {m.failed_writes[0]}")
    if not m.stored_ok:
        m.errors.append("stored dossier differs from the screen")
    m.errors.extend("unhandled exception in a slot:\n" + u for u in unhandled)
    m.errors.extend(
        f"Qt {text}" for text in qt_messages if text.startswith(("QtCriticalMsg", "QtFatalMsg"))
    )

    nan = float("nan")
    p50, p95, p99, worst = (
        (percentile(latencies, p) for p in (50, 95, 99, 100)) if latencies else (nan,) * 4
    )
    rate = len(m.key_times) / m.typing_s if m.typing_s else 0.0
    median_gap = statistics.median(gaps) * 1000 if gaps else nan
    where = ""
    if 0 < m.worst_gap_at_edit <= len(m.key_times):
        where = f", right after keystroke #{m.worst_gap_at_edit} ({plan(m.edits)[m.worst_gap_at_edit - 1][0]})"
    elif m.worst_gap_at_edit == 0:
        where = ", before the first keystroke"
    print()
    print(f"typing           : {len(m.key_times)} keystrokes in {m.typing_s:.2f} s ({rate:.0f}/s)")
    if m.lateness:
        late = sorted(m.lateness)
        print(
            f"behind schedule  : keystrokes sent late by p50 {late[len(late) // 2] * 1000:.1f} ms, "
            f"max {late[-1] * 1000:.1f} ms (latency counts from the send)"
        )
    print(
        f"journal writes   : {m.writes} carrying the sheet "
        f"({len(m.key_times) / max(m.writes, 1):.2f} keystrokes per write), "
        f"{m.other_writes} other, {len(m.failed_writes)} failed"
    )
    print(
        f"edit→durable     : p50 {p50:.1f} ms, p95 {p95:.1f} ms, p99 {p99:.1f} ms, max {worst:.1f} ms"
    )
    print(
        f"heartbeat (5 ms) : {len(m.ticks)} ticks, median gap {median_gap:.1f} ms, "
        f"longest stall {stall_ms:.1f} ms{where}"
    )
    # the GUI thread's own CPU between two ticks: what the stall would be on
    # an idle machine (the rest of a gap is waiting for a CPU)
    cpu_gaps = [b - a for a, b in itertools.pairwise(m.tick_cpu)]
    stall_cpu_ms = slice_ms = nan
    slice_where = ""
    if cpu_gaps and len(cpu_gaps) == len(gaps):
        longest = max(range(len(gaps)), key=gaps.__getitem__)
        stall_cpu_ms = cpu_gaps[longest] * 1000
        waits = [b - a for a, b in itertools.pairwise(m.tick_wait)]
        split = ""
        if len(waits) == len(gaps):
            waited = waits[longest] * 1000
            rest = gaps[longest] * 1000 - stall_cpu_ms - waited
            split = f", {waited:.1f} ms waiting for a CPU, {rest:.1f} ms blocked (GIL, locks, I/O)"
        biggest = max(range(len(cpu_gaps)), key=cpu_gaps.__getitem__)
        slice_ms = cpu_gaps[biggest] * 1000
        at = m.tick_edit[biggest + 1] if biggest + 1 < len(m.tick_edit) else -1
        if 0 < at <= len(m.key_times):
            slice_where = f", after keystroke #{at} ({plan(m.edits)[at - 1][0]})"
        print(
            f"longest stall    : {stall_cpu_ms:.1f} ms of the GUI thread's own CPU{split}\n"
            f"GUI thread's work: longest own slice between two ticks {slice_ms:.1f} ms{slice_where}"
        )
    m.stall_cpu_ms, m.slice_ms = stall_cpu_ms, slice_ms
    busy = "n/a" if m.machine_busy is None else f"{m.machine_busy * 100:.0f} %"
    load = "n/a" if m.load_before is None else f"{m.load_before:.2f}"
    print(
        f"CPU while typing : this process {m.cpu_s * 1000:.0f} ms of CPU in "
        f"{m.typing_s * 1000:.0f} ms ({m.cpu_s / m.typing_s * 100 if m.typing_s else 0:.0f} % of "
        f"one core, {m.cpu_s / max(len(m.key_times), 1) * 1e6:.0f} µs per keystroke); "
        f"machine ({os.cpu_count()} CPUs) busy {busy}; load average {load} at start"
    )
    if m.gui_wait_s is not None and m.threads_wait_s is not None:
        print(
            f"waiting for a CPU: GUI thread {m.gui_wait_s * 1000:.0f} ms, all threads "
            f"{m.threads_wait_s * 1000:.0f} ms while typing (runnable, preempted by other processes)"
        )
    print(f"sealing          : {m.seals} records sealed, {m.seals_on_gui_thread} on the GUI thread")
    print(f"stored dossier   : {'equals the screen' if m.stored_ok else 'DIFFERS'}")
    for line in m.stored_detail:
        print(f"  {line}")
    if problems:
        print(f"app log warnings/errors: {len(problems)}")
        for line in problems[:10]:
            print(f"  {line}")
    if qt_messages:
        print(f"Qt warnings (offscreen noise left out): {len(qt_messages)}")
        for line in dict.fromkeys(qt_messages):
            print(f"  {line}")
    ok_p99 = p99 <= GOAL_P99_MS
    ok_stall = stall_ms <= GOAL_STALL_MS
    print()
    print(
        f"goal: p99 edit→durable ≤ {GOAL_P99_MS:.0f} ms  {'PASS' if ok_p99 else 'FAIL'} ({p99:.1f} ms)"
    )
    print(
        f"goal: longest stall ≤ {GOAL_STALL_MS:.0f} ms     "
        f"{'PASS' if ok_stall else 'FAIL'} ({stall_ms:.1f} ms)"
    )
    for err in m.errors:
        print(f"ERROR: {err}")

    def num(x: float) -> float | None:
        return None if math.isnan(x) else round(x, 2)

    result = {
        "edits": len(m.key_times),
        "interval_ms": args.interval_ms,
        "pacing": "schedule" if args.schedule else "sleep",
        "writes": m.writes,
        "p50_ms": num(p50),
        "p95_ms": num(p95),
        "p99_ms": num(p99),
        "max_ms": num(worst),
        "stall_ms": num(stall_ms),
        "stall_gui_cpu_ms": num(m.stall_cpu_ms),
        "gui_slice_max_ms": num(m.slice_ms),
        "goal_p99_ms": GOAL_P99_MS,
        "goal_stall_ms": GOAL_STALL_MS,
        "stored_matches": m.stored_ok,
        "typing_ms": round(m.typing_s * 1000),
        "cpu_ms": round(m.cpu_s * 1000),
        "machine_busy_pct": None if m.machine_busy is None else round(m.machine_busy * 100),
        "load_before": None if m.load_before is None else round(m.load_before, 2),
        "gui_wait_ms": None if m.gui_wait_s is None else round(m.gui_wait_s * 1000),
        "threads_wait_ms": None if m.threads_wait_s is None else round(m.threads_wait_s * 1000),
        "seals": m.seals,
        "seals_on_gui_thread": m.seals_on_gui_thread,
        "errors": len(m.errors),
        "pass": ok_p99 and ok_stall and m.stored_ok and not m.errors,
    }
    if sealed and m.clear_in_file:
        m.errors.append("typed text found in the clear in the journal's files")
    result["sealed"] = sealed
    result["clear_in_file"] = m.clear_in_file
    return result, m.errors


if __name__ == "__main__":
    sys.exit(main())
