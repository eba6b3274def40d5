"""The router in force: the built-in one, or a router file (`mmx-lsp calibrate` writes one in
the user data directory; a team can point `routing.router_file` at a shared one), read again
when the file changes, so a calibration takes effect without a restart."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from mmx_lsp.router import Router, load
from mmx_lsp.scoring import FEATURE_NAMES

log = logging.getLogger("mmx_lsp")

FILE_NAME = "router.json"
# How often the file's modification time is looked at: a stat per keystroke is not needed.
CHECK_EVERY_S = 2.0


def default_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("mmx", appauthor=False)) / FILE_NAME


def path_for(router_file: str | None) -> Path:
    """The router file the settings name, else the user data directory's."""
    return Path(router_file).expanduser() if router_file else default_path()


class RouterSource:
    """The router for the settings in force, reloaded when its file changes.

    `warn` is told once per distinct problem (a corrupt or newer file), in words the user can
    act on; the built-in router answers meanwhile.
    """

    def __init__(
        self,
        router_file: Callable[[], str | None],
        warn: Callable[[str], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._router_file = router_file
        self._warn = warn
        self._clock = clock
        self._checked = float("-inf")
        self._stamp: tuple[str, float, int] | None = None
        self._router: Router | None = None
        self._warned: set[str] = set()

    def current(self) -> Router:
        now = self._clock()
        if self._router is not None and now - self._checked < CHECK_EVERY_S:
            return self._router
        self._checked = now
        path = path_for(self._router_file())
        try:
            info = os.stat(path)
            stamp = (str(path), info.st_mtime, info.st_size)
        except OSError:
            stamp = (str(path), 0.0, -1)
        if self._router is None or stamp != self._stamp:
            self._stamp = stamp
            router, problem = load(path if stamp[2] >= 0 else None, FEATURE_NAMES)
            if problem is not None and problem not in self._warned:
                self._warned.add(problem)
                self._warn(problem)
            if self._router is None or router.version != self._router.version:
                log.info("router %s (%s)", router.version, router.source)
            self._router = router
        return self._router
