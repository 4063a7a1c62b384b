"""The slot search on screen: searches bringing 10,000+ slots from the
simulator into the OSNP's panel of the real app, with the event loop watched.

    python bench/ui_search.py [--runs N] [--radius-km KM] [--replay] [--large]
                              [--baseline REF] [--no-map] [--display]

Starts SAS Desk through its composition root (``sas_desk.app.run``) on a
temporary data dir, role OSNP (the window lands on the slot search panel,
list and map), waits for the directory sync (not measured), then runs
``--runs`` searches (9 by default) around Lyon, « Quand » = the next 72 h.
The simulator runs in its own process (as real vendors do) and the app is
configured with its vendors and directory feed (``[[vendors]]`` and
``[search] directory_url``, the non-demo path).

``--replay``: one more search comes first, live, and its updates are
recorded with the moment each reached the panel; the measured searches then
replay them at the same pace through a stand-in source — no network, no
parsing: what is measured is the panel's own cost (model, cards, map,
status), the part a search worker leaves on the GUI thread.

``--large``: a denser territory (the simulator's free slots × 2.5) and a
100 km radius — over 50,000 slots a search —, 20 searches by default, and
the memory of the app (this process and its children but the simulator)
after the 20th search against after the 2nd (``rss_growth_pct``).

``--baseline REF``: the same measurement, in the same run, of the tree at
git ``REF`` (checked out in a temporary worktree, run in a child process
against the same simulator), printed side by side with the ratio.
``--baseline in-process``: this tree with the search in the window's
process (``[search] worker = false``) as the baseline; ``--in-process``
measures that alone.

Measures, per search:

* the longest event-loop stall: a 16 ms QTimer heartbeat (PreciseTimer) runs
  during the whole search and render; stall = largest gap between two ticks
  minus 16 ms. Goals: median over the searches ≤ 17 ms (one frame), the
  worst ≤ 33 ms;
* the GUI thread's CPU (``time.thread_time``) from the search start to the
  end of the render (0.5 s after the last update), goal ≤ 250 ms;
* time to first card: from the moment the first batch's answer reaches the
  panel (the first update carrying offers) to the first paint of the list
  with a card in it, goal ≤ 300 ms;
* the whole search (start → last update applied), places and slots shown.

``QT_QPA_PLATFORM=offscreen`` unless ``--display`` is passed and ``DISPLAY``
is set.  A measurement: exit 0 when it completed (goals met or not), 1 when
it could not be trusted (no slots, an error).  The last line is
``RESULT {json}``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import itertools
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# the tree measured: this one, or the baseline's worktree (--baseline, child)
TREE = Path(os.environ.get("SAS_DESK_BENCH_TREE") or ROOT)
sys.path.insert(0, str(TREE))
sys.path.insert(0, str(ROOT / "bench"))

from simulated import Simulated  # noqa: E402  (bench/simulated.py)

HEARTBEAT_MS = 16
GOAL_STALL_MEDIAN_MS = 17.0
GOAL_STALL_MAX_MS = 33.0
GOAL_GUI_CPU_MS = 250.0
GOAL_FIRST_CARD_MS = 300.0
GOAL_RSS_GROWTH_PCT = 5.0
MIN_SLOTS = 10_000
MIN_SLOTS_LARGE = 50_000
LARGE_DENSITY = 2.5
LARGE_RADIUS_KM = 100.0
SETTLE_S = 0.5
IDLE_S = 3.0
LYON = (45.7640, 4.8357)


@dataclass
class Run:
    slots: int = 0
    places: int = 0
    total_ms: float = 0.0
    first_update_ms: float = 0.0  # search start -> first update with offers
    first_card_ms: float = 0.0  # first update with offers -> first card painted
    stall_ms: float = 0.0
    cpu_ms: float = 0.0  # GUI thread, start -> end of the render
    updates: int = 0
    apply_max_ms: float = 0.0  # longest time the panel took to take one update
    rss_mb: float = 0.0
    rss_app_mb: float = 0.0  # the window's process alone (the rest: its children)


@dataclass
class Measure:
    runs: list[Run] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    sync_s: float = 0.0
    idle_cpu_ms_per_s: float = 0.0  # the GUI thread's CPU with nothing searched


def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def app_rss_mb(exclude: set[int]) -> float:
    """This process (the app) and its children (a search worker), not the
    simulator."""
    me = os.getpid()
    pids = [me] + [p for p in _descendants(me) if p not in exclude]
    return sum(_rss_kb(p) for p in pids) / 1024


class Recorder:
    """Wraps the app's source: the first search's updates, with when each came."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.recorded: list[tuple[float, Any]] = []

    async def search(self, query: Any) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        stream = self.inner.search(query)
        try:
            async for update in stream:
                self.recorded.append((loop.time() - t0, update))
                yield update
        finally:
            await stream.aclose()


class Replay:
    """Gives the recorded updates again, at their recorded pace."""

    def __init__(self, recorded: list[tuple[float, Any]]) -> None:
        self.recorded = recorded

    async def search(self, query: Any) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for at, update in self.recorded:
            wait = at - (loop.time() - t0)
            await asyncio.sleep(max(0.0, wait))
            yield update


def _load(path: str | None) -> Any:
    if not path or not Path(path).exists():
        return None
    return pickle.loads(Path(path).read_bytes())


def _save(path: str, recorded: list[tuple[float, Any]]) -> None:
    Path(path).write_bytes(pickle.dumps(recorded))


def make_scenario(  # type: ignore[no-untyped-def]
    m: Measure, args: argparse.Namespace, sim_pids: set[int]
):
    profiler = cProfile.Profile() if args.profile else None

    async def scenario(window: Any) -> None:
        from PySide6.QtCore import QEvent, QObject, Qt, QTimer

        from sas_desk.models.search import Window
        from sas_desk.services.geo.resolver import Place

        try:
            panel = window.slot_panel
            if panel is None:
                raise RuntimeError("the OSNP role did not land on the slot search")
            panel.open_url = lambda url: True
            t0 = time.monotonic()
            while panel._source is None:
                if time.monotonic() - t0 > 180:
                    raise RuntimeError("directory sync did not finish in 180 s")
                await asyncio.sleep(0.05)
            m.sync_s = time.monotonic() - t0
            await asyncio.sleep(0.5)  # the map settles
            # what the window costs its GUI thread when nothing is searched
            # (timers, the queues' polling, the clock...): the floor under
            # gui_cpu_ms_per_search, which grows with a search's duration
            began, cpu0 = time.monotonic(), time.thread_time()
            await asyncio.sleep(IDLE_S)
            m.idle_cpu_ms_per_s = (time.thread_time() - cpu0) * 1000 / (time.monotonic() - began)
            place = Place("Lyon (69001)", "municipality", "Lyon", "69123", "69001", *LYON)

            async def one_search(n: int) -> Run:
                run = Run()
                ticks: list[float] = []
                marks: dict[str, float] = {}

                class PaintWatch(QObject):
                    def eventFilter(
                        self, obj: QObject, event: QEvent, marks: dict[str, float] = marks
                    ) -> bool:
                        if (
                            event.type() == QEvent.Type.Paint
                            and "first_update" in marks
                            and "first_card" not in marks
                            and panel.model.rowCount() > 0
                        ):
                            marks["first_card"] = time.monotonic()
                        return False

                watch = PaintWatch()
                panel.list.viewport().installEventFilter(watch)
                apply = panel._apply

                def watched(
                    update: Any, apply: Any = apply, marks: dict[str, float] = marks
                ) -> None:
                    if update.offers and "first_update" not in marks:
                        marks["first_update"] = time.monotonic()
                    began = time.perf_counter()
                    apply(update)
                    took = (time.perf_counter() - began) * 1000
                    marks["apply_max_ms"] = max(marks.get("apply_max_ms", 0.0), took)
                    if update.done:
                        marks["done"] = time.monotonic()

                panel._apply = watched
                heartbeat = QTimer()
                heartbeat.setTimerType(Qt.TimerType.PreciseTimer)
                heartbeat.setInterval(HEARTBEAT_MS)
                heartbeat.timeout.connect(lambda ticks=ticks: ticks.append(time.monotonic()))
                heartbeat.start()
                ticks.append(time.monotonic())
                panel.set_place(place)
                panel.radius.setValue(int(args.radius_km))
                panel.window_choice.setCurrentIndex(
                    panel.window_choice.findData(Window[args.window])
                )
                if profiler is not None and n > 0:
                    profiler.enable()
                start = time.monotonic()
                cpu0 = time.thread_time()
                task = panel.start_search()
                if task is None:
                    raise RuntimeError("the search did not start")
                await task
                await asyncio.sleep(SETTLE_S)  # render and map regrouping after the last update
                run.cpu_ms = (time.thread_time() - cpu0) * 1000
                if profiler is not None:
                    profiler.disable()
                heartbeat.stop()
                panel._apply = apply
                panel.list.viewport().removeEventFilter(watch)
                if "done" not in marks or "first_card" not in marks:
                    raise RuntimeError(f"search {n}: incomplete ({sorted(marks)})")
                gaps = [b - a for a, b in itertools.pairwise(ticks)]
                run.stall_ms = max(0.0, max(gaps) * 1000 - HEARTBEAT_MS) if gaps else 0.0
                run.total_ms = (marks["done"] - start) * 1000
                run.first_update_ms = (marks["first_update"] - start) * 1000
                run.first_card_ms = (marks["first_card"] - marks["first_update"]) * 1000
                run.slots = panel.model.slot_count
                run.places = panel.model.rowCount()
                run.updates = panel.updates
                run.apply_max_ms = marks.get("apply_max_ms", 0.0)
                run.rss_mb = app_rss_mb(sim_pids)
                run.rss_app_mb = _rss_kb(os.getpid()) / 1024
                return run

            recorded = _load(args.replay_file)
            if recorded is not None:
                panel._source = Replay(recorded)
                print("replaying the parent's recording", flush=True)
            elif args.replay:
                recorder = Recorder(panel._source)
                panel._source = recorder
                warm = await one_search(0)
                print(
                    f"recorded (live, not measured): {warm.slots} slots, "
                    f"{len(recorder.recorded)} updates in {warm.total_ms:.0f} ms",
                    flush=True,
                )
                panel._source = Replay(recorder.recorded)
                if args.replay_file:  # for the baseline: the same updates at the same pace
                    _save(args.replay_file, recorder.recorded)
            for n in range(args.runs):
                run = await one_search(n + 1)
                m.runs.append(run)
                print(
                    f"search {n + 1}: {run.slots} slots, {run.places} places, "
                    f"{run.updates} updates, all in {run.total_ms:.0f} ms; "
                    f"first offers at {run.first_update_ms:.0f} ms, first card "
                    f"+{run.first_card_ms:.1f} ms; longest stall {run.stall_ms:.1f} ms; "
                    f"GUI CPU {run.cpu_ms:.0f} ms (panel update at most "
                    f"{run.apply_max_ms:.1f} ms); RSS {run.rss_mb:.0f} MB "
                    f"(window's process {run.rss_app_mb:.0f} MB)",
                    flush=True,
                )
        except Exception:
            m.errors.append(traceback.format_exc())
        finally:
            window.close()
            if profiler is not None:
                profiler.dump_stats(args.profile)
                print(f"profile of the measured searches (GUI thread): {args.profile}")

    return scenario


def measure(args: argparse.Namespace, sim_url: str, sim_pids: set[int]) -> dict[str, Any]:
    """Run the app on this process and return the RESULT (``ok`` False on failure)."""
    import httpx

    from sas_desk.app import RunOptions, run
    from sas_desk.services.config import Config, VendorEndpoint

    if args.no_map:
        from sas_desk.ui.slot_search import SlotSearchPanel

        SlotSearchPanel._create_map = lambda self: None  # type: ignore[method-assign]
    m = Measure()
    meta = httpx.get(f"{sim_url}/_meta", timeout=60).json()
    vendors = tuple(VendorEndpoint(str(v["name"]), str(v["base_url"])) for v in meta)
    with tempfile.TemporaryDirectory(prefix="sas-desk-ui-search-") as tmp:
        config = Config(
            demo=False,
            data_dir=Path(tmp),
            workstation="BENCH-OSNP",
            operator="bench",
            role="OSNP",
            vendors=vendors,
            directory_url=f"{sim_url}/directory",
            search_worker=not args.in_process,
        )
        code = run(config, RunOptions(on_ready=make_scenario(m, args, sim_pids)))
    for error in m.errors:
        print(error, file=sys.stderr)
    if code != 0 or m.errors or not m.runs:
        return {"ok": False, "errors": len(m.errors)}
    runs = m.runs
    rss_growth = None
    if args.large and len(runs) >= 3:
        rss_growth = round((runs[-1].rss_mb - runs[1].rss_mb) / runs[1].rss_mb * 100, 2)
    slots = min(r.slots for r in runs)
    return {
        "ok": slots > 0,
        "tree": _describe(TREE),
        "search_worker": not args.in_process,
        "runs": len(runs),
        "replay": bool(args.replay),
        "large": bool(args.large),
        "map": not args.no_map,
        "radius_km": args.radius_km,
        "slots": slots,
        "places": min(r.places for r in runs),
        "updates_median": statistics.median(r.updates for r in runs),
        "total_ms_median": round(statistics.median(r.total_ms for r in runs), 1),
        "first_offers_ms_median": round(statistics.median(r.first_update_ms for r in runs), 1),
        "first_card_ms_max": round(max(r.first_card_ms for r in runs), 1),
        "stall_median_ms": round(statistics.median(r.stall_ms for r in runs), 1),
        "stall_max_ms": round(max(r.stall_ms for r in runs), 1),
        "stalls_ms": [round(r.stall_ms, 1) for r in runs],
        "gui_cpu_ms_per_search": round(statistics.median(r.cpu_ms for r in runs), 1),
        "gui_cpu_ms_max": round(max(r.cpu_ms for r in runs), 1),
        "idle_cpu_ms_per_s": round(m.idle_cpu_ms_per_s, 1),
        # the search's own share: its CPU minus the idle floor over its duration
        "gui_cpu_ms_net_per_search": round(
            statistics.median(
                r.cpu_ms - m.idle_cpu_ms_per_s * (r.total_ms / 1000 + SETTLE_S) for r in runs
            ),
            1,
        ),
        "panel_update_max_ms": round(max(r.apply_max_ms for r in runs), 1),
        "rss_mb_after_2nd": round(runs[1].rss_mb, 1) if len(runs) > 1 else None,
        "rss_mb_last": round(runs[-1].rss_mb, 1),
        "rss_growth_pct": rss_growth,
        "rss_app_mb_after_2nd": round(runs[1].rss_app_mb, 1) if len(runs) > 1 else None,
        "rss_app_mb_last": round(runs[-1].rss_app_mb, 1),
        "sync_s": round(m.sync_s, 1),
    }


def _describe(tree: Path) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(tree), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return out + ("+changes" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return str(tree)


def baseline(args: argparse.Namespace, sim_url: str, sim_pid: int) -> dict[str, Any]:
    """The same measurement of the tree at ``args.baseline``, in a child process
    (``in-process``: this tree, the search in the window's process)."""
    in_process = args.baseline == "in-process"
    with tempfile.TemporaryDirectory(prefix="sas-desk-baseline-") as tmp:
        tree = ROOT if in_process else Path(tmp) / "tree"
        if not in_process:
            subprocess.run(
                [
                    "git",
                    "-C",
                    str(ROOT),
                    "worktree",
                    "add",
                    "--detach",
                    "-q",
                    str(tree),
                    args.baseline,
                ],
                check=True,
            )
        try:
            argv = [sys.executable, str(Path(__file__).resolve()), "--child", sim_url]
            argv += ["--in-process"] * in_process
            argv += ["--sim-pid", str(sim_pid), "--runs", str(args.runs)]
            argv += ["--radius-km", str(args.radius_km), "--window", args.window]
            argv += ["--replay"] * args.replay + ["--large"] * args.large
            argv += ["--no-map"] * args.no_map + ["--display"] * args.display
            if args.replay_file:
                argv += ["--replay-file", args.replay_file]
            env = {**os.environ, "SAS_DESK_BENCH_TREE": str(tree), "PYTHONPATH": str(tree)}
            proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=3600)
            for line in proc.stdout.splitlines():
                if not line.startswith("RESULT "):
                    print(f"  [baseline] {line}", flush=True)
            results = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
            if proc.returncode != 0 or not results:
                print(proc.stderr[-3000:], file=sys.stderr)
                return {"ok": False}
            return dict(json.loads(results[-1][len("RESULT ") :]))
        finally:
            if not in_process:
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
                    check=False,
                )


COMPARED = (
    "slots",
    "stall_median_ms",
    "stall_max_ms",
    "gui_cpu_ms_per_search",
    "gui_cpu_ms_net_per_search",
    "idle_cpu_ms_per_s",
    "first_card_ms_max",
    "panel_update_max_ms",
    "total_ms_median",
    "rss_growth_pct",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--radius-km", type=float, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument(
        "--window",
        choices=("DEFAULT", "H4", "H24", "H72"),
        default="H72",
        help="the panel's « Quand » (default H72: the next 72 h, the simulator's horizon)",
    )
    parser.add_argument("--replay", action="store_true", help="measure the panel alone")
    parser.add_argument("--large", action="store_true", help="≥ 50,000 slots, memory growth")
    parser.add_argument("--baseline", metavar="REF", help="also measure git REF, side by side")
    parser.add_argument(
        "--profile", metavar="FILE", help="cProfile of the measured searches (GUI thread) to FILE"
    )
    parser.add_argument("--display", action="store_true")
    parser.add_argument("--no-map", action="store_true", help="the panel without its map")
    parser.add_argument(
        "--in-process", action="store_true", help="the search in the window's process"
    )
    parser.add_argument("--child", metavar="SIM_URL", help=argparse.SUPPRESS)
    parser.add_argument("--sim-pid", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--replay-file", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.runs is None:
        args.runs = 20 if args.large else 9
    if args.radius_km is None:
        args.radius_km = LARGE_RADIUS_KM if args.large else 20.0
    if args.runs < 1 or (args.large and args.runs < 3):
        parser.error("--runs must be ≥ 1 (≥ 3 with --large)")
    if not (args.display and os.environ.get("DISPLAY")):
        os.environ["QT_QPA_PLATFORM"] = "offscreen"

    if args.child:  # the baseline's measurement, for the parent to read
        result = measure(args, args.child, {args.sim_pid})
        print("RESULT " + json.dumps(result))
        return 0 if result.get("ok") else 1

    recording = tempfile.TemporaryDirectory(prefix="sas-desk-replay-")
    if args.replay and args.baseline:  # written by the first search, read by the baseline
        args.replay_file = str(Path(recording.name) / "updates.pickle")
    sim = Simulated(density=LARGE_DENSITY if args.large else 1.0)
    try:
        sim_pids = {sim.proc.pid}
        print(f"tree {_describe(TREE)}", flush=True)
        result = measure(args, sim.base_url, sim_pids)
        base = baseline(args, sim.base_url, sim.proc.pid) if args.baseline else None
    finally:
        sim.close()
        recording.cleanup()
    if not result.get("ok"):
        print("RESULT " + json.dumps({"ok": False, "errors": result.get("errors", 0)}))
        return 1
    print(f"directory sync (not measured above): {result['sync_s']:.1f} s")
    print(f"longest stall of each search (ms): {result['stalls_ms']}")
    if base is not None:
        print(f"baseline {args.baseline} ({base.get('tree')}) stalls (ms): {base.get('stalls_ms')}")
        print(f"{'':26} {'this tree':>12} {'baseline':>12} {'ratio':>7}")
        for key in COMPARED:
            a, b = result.get(key), base.get(key)
            ratio = (
                f"{a / b:.2f}"
                if isinstance(a, int | float) and isinstance(b, int | float) and b
                else ""
            )
            print(f"{key:26} {a!s:>12} {b!s:>12} {ratio:>7}")
        result["baseline"] = {k: base.get(k) for k in (*COMPARED, "tree", "stalls_ms", "ok")}
    goals = {
        "stall_median": (result["stall_median_ms"], GOAL_STALL_MEDIAN_MS),
        "stall_max": (result["stall_max_ms"], GOAL_STALL_MAX_MS),
        "gui_cpu": (result["gui_cpu_ms_per_search"], GOAL_GUI_CPU_MS),
        "first_card": (result["first_card_ms_max"], GOAL_FIRST_CARD_MS),
    }
    if args.large and result["rss_growth_pct"] is not None:
        goals["rss_growth"] = (result["rss_growth_pct"], GOAL_RSS_GROWTH_PCT)
    passed = True
    for name, (value, goal) in goals.items():
        ok = value <= goal
        passed &= ok
        print(f"goal: {name} ≤ {goal:g}   {'PASS' if ok else 'FAIL'} ({value})")
    min_slots = MIN_SLOTS_LARGE if args.large else MIN_SLOTS
    enough = result["slots"] >= min_slots
    print(f"goal: slots ≥ {min_slots}   {'PASS' if enough else 'FAIL'} ({result['slots']})")
    result.update(
        slots_goal_met=enough,
        heartbeat_ms=HEARTBEAT_MS,
        goal_stall_median_ms=GOAL_STALL_MEDIAN_MS,
        goal_stall_max_ms=GOAL_STALL_MAX_MS,
        goal_gui_cpu_ms=GOAL_GUI_CPU_MS,
        goal_first_card_ms=GOAL_FIRST_CARD_MS,
        load_1min=round(os.getloadavg()[0], 2),
        **({"goal_rss_growth_pct": GOAL_RSS_GROWTH_PCT} if args.large else {}),
        **{"pass": passed and enough},
    )
    print("RESULT " + json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
