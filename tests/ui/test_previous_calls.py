"""Earlier calls from the number being typed: looked up in the journal's
thread, which decodes a dossier once per revision — a lookup late in a shift
decoded the thousands of dossiers of three days each time (bench/shift.py:
the process's CPU per call grew 2.7× over 2,000 calls) — and hands the loop
the matches only."""

from __future__ import annotations

import threading

import pytest

from sas_desk.services.journal.store import JournalStore
from tests.ui.conftest import Env

pytestmark = [pytest.mark.asyncio(loop_scope="session")]


async def test_previous_calls_decode_only_what_changed_off_the_loop(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    for n in range(12):
        d = env.desk.new_call()
        d.caller.callback = "+33612345678" if n % 4 == 0 else f"+336000000{n:02d}"
        d.inputs["callback"] = d.caller.callback
        env.desk.touch(d)
        calls.append(d)
    current = env.desk.new_call()
    assert await env.journal.flush(timeout=5)

    decoded: list[str] = []  # the thread of each dossier decoded
    real = JournalStore._dossier

    def counting(self: JournalStore, case_id: str, stored: str):  # type: ignore[no-untyped-def]
        decoded.append(threading.current_thread().name)
        return real(self, case_id, stored)

    monkeypatch.setattr(JournalStore, "_dossier", counting)
    expected = [calls[n].case_id for n in (8, 4, 0)]  # newest first
    found = await env.desk.previous_calls("+33612345678", current)
    assert [d.case_id for d in found] == expected
    assert len(decoded) >= 12 and threading.main_thread().name not in decoded
    # again: only the three matches are decoded (to be handed over), not the day
    decoded.clear()
    found = await env.desk.previous_calls("+33612345678", current)
    assert [d.case_id for d in found] == expected and len(decoded) == 3
    # a dossier written since is decoded again: here it took the number
    calls[1].caller.callback = "+33612345678"
    calls[1].inputs["callback"] = calls[1].caller.callback
    env.desk.touch(calls[1])
    assert await env.journal.flush(timeout=5)
    decoded.clear()
    found = await env.desk.previous_calls("+33612345678", current)
    assert calls[1].case_id in [d.case_id for d in found] and len(decoded) == 4
