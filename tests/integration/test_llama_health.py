"""`mmx.health` against llama.cpp's real OpenAI-compatible server (llama-cpp-python)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import llama_cpp

from tests.e2e.conftest import command, start, stop

from .conftest import LlamaServer
from .test_llama_cpp import settings_for

TIMEOUT_S = 60.0


async def test_health_finds_llama_cpp_up_and_its_completions_without_fill_in_the_middle(
    llama_server: LlamaServer, tmp_path: Path
) -> None:
    options = settings_for(llama_server).model_dump(mode="json", exclude_none=True)
    client = await start(tmp_path, init_options=options)
    try:
        result = await asyncio.wait_for(command(client, "mmx.health", {}), TIMEOUT_S)
    finally:
        await stop(client)
    tiers = {t["tier"]: t for t in result["tiers"]}
    for tier in tiers.values():
        assert (tier["reachable"], tier["model_listed"]) == (True, True)
        assert isinstance(tier["latency_ms"], int)
    # The chat tier is well.
    assert tiers["premium"]["ok"] is True and tiers["premium"]["fim"] == "n/a"
    # The completions tier: llama-cpp-python's /v1/completions does not fill in the middle.
    cheap = tiers["cheap"]
    assert cheap["fim"] == "no"
    assert f"llama-cpp-python {llama_cpp.__version__}" in cheap["fim_detail"]
    assert 'api = "chat"' in cheap["problem"]
    assert result["ok"] is False
