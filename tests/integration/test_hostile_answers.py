"""Hostile answers from the network sources (issue 18): the geocoder and the
directory feed read JSON through the same limits as files."""

from __future__ import annotations

import httpx
import pytest

from sas_desk.services.directory import DirectoryStore, DirectorySync, DirectorySyncError
from sas_desk.services.geo.ban import BanGeocoder, GeocodingError

HOSTILE = {
    "deep": b"[" * 100_000 + b"]" * 100_000,
    "bigint": b'{"features": [' + b"9" * 5001 + b"]}",
}


def transport(body: bytes) -> httpx.MockTransport:
    return httpx.MockTransport(
        lambda request: httpx.Response(
            200, content=body, headers={"content-type": "application/json"}
        )
    )


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_a_hostile_geocoder_answer_is_a_geocoding_error(kind: str) -> None:
    async with httpx.AsyncClient(transport=transport(HOSTILE[kind])) as client:
        with pytest.raises(GeocodingError) as caught:
            await BanGeocoder("https://ban.example", client).search("12 rue de la République Lyon")
    assert caught.value.reason == "invalid_response"


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", sorted(HOSTILE))
async def test_a_hostile_directory_page_aborts_the_sync_in_french(kind: str) -> None:
    store = DirectoryStore()
    async with httpx.AsyncClient(transport=transport(HOSTILE[kind])) as client:
        with pytest.raises(DirectorySyncError) as caught:
            await DirectorySync(store, "https://feed.example/dir", client).run()
    assert "JSON" in caught.value.message_fr
