"""A scripted system browser and e-CPS phone for the simulated identity
providers (sas_desk/simulator/oidc.py), over real HTTP."""

from __future__ import annotations

import re
from urllib.parse import urljoin

import httpx

_SESSION = re.compile(r'name="session" value="([^"]+)"')


async def pending_approvals(
    http: httpx.AsyncClient, base_url: str, nid: str
) -> list[dict[str, str]]:
    response = await http.get(f"{base_url}/ecps/pending", params={"user": nid})
    response.raise_for_status()
    return list(response.json()["requests"])


async def phone(http: httpx.AsyncClient, base_url: str, nid: str, decision: str = "approve") -> str:
    """The professional taps the e-CPS app: approves (or denies) the one
    pending request; returns its binding message."""
    pending = await pending_approvals(http, base_url, nid)
    assert len(pending) == 1, pending
    response = await http.post(
        f"{base_url}/ecps/approve",
        data={"request_id": pending[0]["request_id"], "decision": decision},
    )
    assert response.status_code == 200, response.text
    return pending[0]["binding_message"]


async def psc_browser(
    http: httpx.AsyncClient, url: str, nid: str, *, decision: str = "approve"
) -> httpx.Response:
    """Open the PSC authorization URL, type the national id, approve on the
    phone, wait, and follow the redirect to the loopback listener."""
    page = await http.get(url)
    assert page.status_code == 200, page.text
    session = _SESSION.search(page.text)
    assert session is not None, page.text
    base = f"{page.url.scheme}://{page.url.netloc.decode()}"
    login = await http.post(
        f"{base}/wallet/auth/login", data={"session": session.group(1), "login": nid}
    )
    assert login.status_code == 200, login.text
    await phone(http, base, nid, decision)
    wait = await http.get(f"{base}/wallet/auth/wait", params={"session": session.group(1)})
    assert wait.status_code == 302, wait.text
    return await http.get(wait.headers["location"])


async def establishment_browser(
    http: httpx.AsyncClient, url: str, username: str, password: str
) -> httpx.Response:
    page = await http.get(url)
    assert page.status_code == 200, page.text
    session = _SESSION.search(page.text)
    assert session is not None
    action = re.search(r'form method="post" action="([^"]+)"', page.text)
    assert action is not None
    login = await http.post(
        urljoin(str(page.url), action.group(1)),
        data={"session": session.group(1), "username": username, "password": password},
    )
    assert login.status_code == 302, login.text
    return await http.get(login.headers["location"])
