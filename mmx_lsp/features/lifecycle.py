"""initialize / initialized / configuration changes (settings and settings files) / shutdown."""

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


def settings_files(roots: list[Path]) -> set[Path]:
    """The files settings are read from (config.file_sources), as absolute paths."""
    from mmx_lsp import config

    files = {config.user_config_path()}
    for root in roots:
        files.update({root / "mmx.toml", root / "pyproject.toml"})
    return {f.absolute() for f in files}


def _watchers(roots: list[Path], relative: bool) -> list[types.FileSystemWatcher]:
    """Watchers for the settings files: exact files where the client takes relative patterns
    (a nonexistent folder is left out: a client may fail to watch it), else name globs."""
    from mmx_lsp import config

    user = config.user_config_path()
    if not relative:
        return [
            types.FileSystemWatcher(glob_pattern=pattern)
            for pattern in ("**/mmx.toml", "**/pyproject.toml", user.as_posix())
        ]
    places = [(root, name) for root in roots for name in ("mmx.toml", "pyproject.toml")]
    places.append((user.parent, user.name))
    return [
        types.FileSystemWatcher(
            glob_pattern=types.RelativePattern(base_uri=folder.absolute().as_uri(), pattern=name)
        )
        for folder, name in places
        if folder.is_dir()
    ]


async def watch_settings_files(ls: MmxServer) -> None:
    """Ask the editor to report changes to the settings files (workspace/didChangeWatchedFiles);
    without dynamic registration, say in the log that a change needs a restart."""
    workspace = ls.client_capabilities.workspace
    caps = workspace.did_change_watched_files if workspace is not None else None
    if caps is None or not caps.dynamic_registration:
        text = (
            "mmx: this editor does not let the server watch files; a change to mmx.toml, "
            "pyproject.toml or the user config.toml applies when the editor reports it "
            "(workspace/didChangeWatchedFiles) or after a restart of the server"
        )
        log.info("%s", text)
        ls.log_to_client(text, types.MessageType.Info)
        return
    watchers = _watchers(ls.roots, bool(caps.relative_pattern_support))
    registration = types.Registration(
        id="mmx-settings-files",
        method=types.WORKSPACE_DID_CHANGE_WATCHED_FILES,
        register_options=types.DidChangeWatchedFilesRegistrationOptions(watchers=watchers),
    )
    try:
        await ls.client_register_capability_async(
            types.RegistrationParams(registrations=[registration])
        )
    except Exception as exc:  # the client refused: changes then need a restart
        log.warning("the editor did not watch the settings files (%s); edits need a restart", exc)
        return
    log.info("watching the settings files: %s", ", ".join(str(f) for f in settings_files(ls.roots)))


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
        ls.spawn(ls.learn_answer_sizes(), "answer sizes")
        ls.spawn(ls.watch_regressions(), "regression watch")
        ls.spawn(watch_settings_files(ls), "watch settings files")

    @server.feature(types.WORKSPACE_DID_CHANGE_WATCHED_FILES)
    def did_change_watched_files(ls: MmxServer, params: types.DidChangeWatchedFilesParams) -> None:
        from mmx_lsp.documents import uri_to_path

        watched = settings_files(ls.roots)
        changed = sorted(
            {
                path
                for c in params.changes
                if (path := Path(uri_to_path(c.uri)).absolute()) in watched
            }
        )
        if not changed:
            return
        names = ", ".join(str(p) for p in changed)
        log.info("settings file changed: %s; reloading", names)
        ls.reload_settings()  # problems are reported as at start-up
        ls.log_to_client(
            f"mmx: settings reloaded after a change to {names}", types.MessageType.Info
        )

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
    async def shutdown(ls: MmxServer, params: Any = None) -> None:
        from mmx_lsp.transport import interrupt_requests

        # A request still being answered ends now and leaves its row (cancelled).
        interrupted = await interrupt_requests(ls)
        if interrupted:
            log.info("shutdown: %d request(s) in flight were cancelled", interrupted)
        for task in list(ls.tasks):
            task.cancel()
        ls.close_metrics()  # every record written before the editor lets the process go
