"""Path globs in the real server: relative to the workspace root, and a useless one named."""

from __future__ import annotations

from pathlib import Path

from lsprotocol import types

from tests.e2e.conftest import open_text, start, stop
from tests.e2e.test_model_calls import collect_statuses, eventually, inline

CODE = "def add(a, b):\n    return a + b\n"


async def test_an_anchored_pattern_excludes_only_at_the_workspace_root(tmp_path: Path) -> None:
    options = {"privacy": {"exclude": ["/config/credentials.py", "./notes.txt"]}}
    client = await start(tmp_path, init_options=options)
    try:
        statuses = collect_statuses(client)
        at_root = open_text(
            client, (tmp_path / "config" / "credentials.py").as_uri(), CODE, "python"
        )
        nested = open_text(
            client, (tmp_path / "app" / "config" / "credentials.py").as_uri(), CODE, "python"
        )
        await inline(client, at_root, types.Position(1, 4))
        await inline(client, nested, types.Position(1, 4))
        # Only the nested file is routed (and answered in preview: no key is set).
        await eventually(lambda: len(statuses) == 1)
        assert statuses[0].kind == "inline" and statuses[0].preview
        warnings = [m for m in client.messages if "can never match" in m.message]
        assert len(warnings) == 1
        assert "privacy.exclude pattern './notes.txt'" in warnings[0].message
        assert warnings[0].type == types.MessageType.Warning
        # The same settings again: the warning is not repeated.
        client.workspace_did_change_configuration(
            types.DidChangeConfigurationParams(settings={"mmx": options})
        )
        await inline(client, nested, types.Position(1, 5))
        await eventually(lambda: len(statuses) == 2)
        assert len([m for m in client.messages if "can never match" in m.message]) == 1
    finally:
        await stop(client)
