"""initialize / initialized / configuration changes / shutdown."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from lsprotocol import types

from mmx_lsp.server import MmxServer  # a runtime import: pygls reads the handlers' hints

log = logging.getLogger("mmx_lsp")


def _roots(params: types.InitializeParams) -> list[Path]:
    from mmx_lsp.documents import uri_to_path

    uris = [f.uri for f in params.workspace_folders or []]
    if not uris and params.root_uri:
        uris = [params.root_uri]
    roots = [Path(uri_to_path(u)) for u in uris]
    if not roots and params.root_path:
        roots = [Path(params.root_path)]
    return roots


def register(server: MmxServer) -> None:
    @server.feature(types.INITIALIZE)
    def initialize(ls: MmxServer, params: types.InitializeParams) -> None:
        # Keep initialize cheap: settings are read once the reply has gone (initialized).
        ls.init_options = params.initialization_options
        try:
            ls.roots = _roots(params)
        except (TypeError, ValueError):
            log.warning("unusable workspace folders in initialize; using none")
            ls.roots = []

    @server.feature(types.INITIALIZED)
    def initialized(ls: MmxServer, params: types.InitializedParams) -> None:
        ls.reload_settings()
        log.info("mmx-lsp ready: tiers %s", {k: t.model for k, t in ls.settings.tiers.items()})
        ls.spawn(ls.watch_regressions(), "regression watch")

    @server.feature(types.WORKSPACE_DID_CHANGE_CONFIGURATION)
    async def did_change_configuration(
        ls: MmxServer, params: types.DidChangeConfigurationParams
    ) -> None:
        settings: Any = params.settings
        section = settings.get("mmx") if isinstance(settings, dict) else None
        if section is None:
            try:
                pulled = await ls.workspace_configuration_async(
                    types.ConfigurationParams(items=[types.ConfigurationItem(section="mmx")])
                )
            except Exception as exc:  # a client without workspace/configuration
                log.info("workspace/configuration failed (%s); settings unchanged", exc)
                return
            section = pulled[0] if pulled else None
        if section is None:
            return
        ls.reload_settings(section, pushed=True)

    @server.feature(types.SHUTDOWN)
    def shutdown(ls: MmxServer, params: Any = None) -> None:
        for task in list(ls.tasks):
            task.cancel()
        ls.close_metrics()  # every record written before the editor lets the process go
