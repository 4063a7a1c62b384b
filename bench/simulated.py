"""The simulator in a child process, for the benchmarks: as real vendors, its
JSON building never competes with the measured process for its interpreter.

    sim = Simulated(["latency:100"])   # one fault spec per vendor, cycled; () = none
    sim = Simulated(density=2.5)       # 2.5× the demo's free slots per place
    ... sim.base_url ...
    sim.close()
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_SCRIPT = """\
import json, sys, urllib.request
from sas_desk.simulator.server import Simulator
faults = json.loads(sys.argv[1])
sim = Simulator(port=0, density=float(sys.argv[2]))
sim.start()
if faults:
    meta = json.loads(urllib.request.urlopen(sim.base_url + "/_meta", timeout=60).read())
    for n, vendor in enumerate(meta):
        sim.set_faults(vendor["name"], faults[n % len(faults)] or None)
print(sim.base_url, flush=True)
sys.stdin.read()
sim.stop()
"""


class Simulated:
    """Started on construction; its base URL once it listens; stopped by
    :meth:`close` (it also stops when this process's end closes its stdin)."""

    def __init__(self, faults: Sequence[str] = (), density: float = 1.0) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _SCRIPT, json.dumps(list(faults)), str(density)],
            cwd=ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.base_url = self.proc.stdout.readline().strip()
        if not self.base_url.startswith("http"):
            self.close()
            raise RuntimeError("the simulator did not start")

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
