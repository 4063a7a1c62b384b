"""Earlier calls from the number being typed: the day's dossiers are sifted
in the journal's thread; the loop gets the matches only (late in a shift the
lookup went through thousands of dossiers, and the loop freed them all)."""

from __future__ import annotations

import threading

import pytest

from sas_desk.models.dossier import Dossier
from tests.ui.conftest import Env

pytestmark = [pytest.mark.asyncio(loop_scope="session")]


async def test_previous_calls_are_sifted_off_the_loop(
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

    sifted_on: set[str] = set()
    real = Dossier.has_content

    def seen(self: Dossier) -> bool:
        sifted_on.add(threading.current_thread().name)
        return bool(real.fget(self))  # type: ignore[attr-defined]

    monkeypatch.setattr(Dossier, "has_content", property(seen))
    found = await env.desk.previous_calls("+33612345678", current)
    assert [d.case_id for d in found] == [calls[n].case_id for n in (8, 4, 0)]  # newest first
    assert sifted_on and threading.main_thread().name not in sifted_on
