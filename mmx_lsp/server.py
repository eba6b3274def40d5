"""The language server: owns the state of one editor session and creates everything once."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.lsp.server import LanguageServer

from mmx_lsp import __version__, transport
from mmx_lsp.transport import MmxProtocol

if TYPE_CHECKING:
    from mmx_lsp.answer_sizes import AnswerSizes
    from mmx_lsp.config import ConfigIssue, Settings
    from mmx_lsp.documents import Documents
    from mmx_lsp.metrics import MetricsStore
    from mmx_lsp.pipeline import Pipeline
    from mmx_lsp.router_file import RouterSource
    from mmx_lsp.routing import Overrides
    from mmx_lsp.spend import Spend

log = logging.getLogger("mmx_lsp")

# Seconds without edits after which a document's whole tree is brought up to date.
IDLE_REPARSE_S = 0.5
# Regression watch: first look soon after start-up (off its path), then hourly.
REGRESSION_FIRST_CHECK_S = 2.0
REGRESSION_CHECK_S = 3600.0


class MmxServer(LanguageServer):
    def __init__(self) -> None:
        super().__init__(
            "mmx-lsp",
            __version__,
            text_document_sync_kind=types.TextDocumentSyncKind.Incremental,
            protocol_cls=MmxProtocol,
        )
        self._documents: Documents | None = None
        self._overrides: Overrides | None = None
        self._settings: Settings | None = None
        self._pipeline: Pipeline | None = None
        self._metrics: MetricsStore | None = None
        self._warming: asyncio.Future[None] | None = None
        self.init_options: Any = None
        self.lsp_settings: Any = None
        self.roots: list[Path] = []
        self.tasks: set[asyncio.Task[Any]] = set()
        self._spend: Spend | None = None
        self._routers: RouterSource | None = None
        self._idle: dict[str, asyncio.TimerHandle] = {}
        self._glob_warnings: set[tuple[str, str]] = set()
        self._sizes: AnswerSizes | None = None

    # -------------------------------------------------------------- state, created lazily

    @property
    def documents(self) -> Documents:
        if self._documents is None:
            from mmx_lsp.documents import Documents

            self._documents = Documents()
        return self._documents

    @property
    def overrides(self) -> Overrides:
        if self._overrides is None:
            from mmx_lsp.routing import Overrides

            self._overrides = Overrides()
        return self._overrides

    @property
    def spend(self) -> Spend:
        """What model calls cost today and in this session."""
        if self._spend is None:
            from mmx_lsp.spend import Spend

            self._spend = Spend()
        return self._spend

    @property
    def routers(self) -> RouterSource:
        """The router in force, re-read when its file changes."""
        if self._routers is None:
            from mmx_lsp.router_file import RouterSource

            self._routers = RouterSource(
                lambda: self.settings.routing.router_file,
                lambda message: self.show(f"mmx: {message}", types.MessageType.Warning),
            )
        return self._routers

    @property
    def sizes(self) -> AnswerSizes:
        """Each model's answer lengths, for pre-call estimates: seeded from the metrics
        database at start (without loading the request path), then learned by the pipeline."""
        if self._sizes is None:
            from mmx_lsp.answer_sizes import AnswerSizes

            self._sizes = AnswerSizes()
        return self._sizes

    @property
    def pipeline(self) -> Pipeline:
        """The request path (providers, cache, records), built on the first request."""
        if self._pipeline is None:
            from mmx_lsp.pipeline import Pipeline
            from mmx_lsp.status import Reporter

            self._pipeline = Pipeline(
                settings=lambda: self.settings,
                reporter=Reporter(self),
                overrides=self.overrides,
                spend=self.spend,
                recorder=lambda: self.metrics,
                spawn=self.spawn,
                router=self.routers.current,
                sizes=self.sizes,
            )
        return self._pipeline

    @property
    def metrics(self) -> MetricsStore:
        """The request records on disk (SQLite), opened on the first record."""
        if self._metrics is None:
            from mmx_lsp.metrics import MetricsStore

            loop = self._loop_or_none()

            def warn(message: str) -> None:  # called on the store's writer thread
                if loop is not None and not loop.is_closed():
                    loop.call_soon_threadsafe(self.show, message, types.MessageType.Warning)

            self._metrics = MetricsStore.from_settings(self.settings, on_warning=warn)
        return self._metrics

    def shutdown(self) -> None:
        """Stop serving, then write every queued record: also when the editor just closed
        stdin (EOF) or sent `exit` without `shutdown`. Requests still in flight were
        cancelled by then (by `asyncio.run`'s clean-up) and have queued their rows."""
        super().shutdown()
        self.close_metrics()

    def close_metrics(self) -> None:
        if self._metrics is not None:
            self._metrics.close(timeout=3.0)
            self._metrics = None

    @staticmethod
    def _loop_or_none() -> asyncio.AbstractEventLoop | None:
        try:
            return asyncio.get_running_loop()
        except RuntimeError:
            return None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self.reload_settings()
        assert self._settings is not None
        return self._settings

    def reload_settings(self, lsp_settings: Any = None, *, pushed: bool = False) -> None:
        """Merge every source; report problems; keep the last good LSP settings."""
        from mmx_lsp import config

        sources, issues = config.file_sources(self.roots)
        if self.init_options is not None:
            sources.append(config.Source("initializationOptions", self._mapping(self.init_options)))
        candidate = self.lsp_settings
        if pushed:
            candidate = lsp_settings
        if candidate is not None:
            sources.append(config.Source("settings", self._mapping(candidate)))
        loaded = config.load(sources)
        issues.extend(loaded.issues)
        rejected = any(i.source == "settings" and i.severity == "error" for i in loaded.issues)
        if pushed and rejected and self._settings is not None:
            # Keep the last valid settings in force; tell the user what was wrong.
            self.report_config(issues)
            return
        if pushed and not rejected:
            self.lsp_settings = candidate
        self._settings = loaded.settings.in_workspace(self.roots)
        self.report_config(issues)
        self.report_globs(self._settings)

    def report_globs(self, settings: Settings) -> None:
        """Warn once per pattern about path globs that can never match a document."""
        from mmx_lsp import globs

        where = [("privacy.exclude", p) for p in settings.privacy.exclude]
        where += [
            (f"routing.rules[{i}].when.path", rule.when.path)
            for i, rule in enumerate(settings.routing.rules)
            if rule.when.path is not None
        ]
        for key, pattern in where:
            for _, why in globs.unmatchable([pattern], settings.roots):
                if (key, pattern) in self._glob_warnings:
                    continue
                self._glob_warnings.add((key, pattern))
                text = f"mmx: {key} pattern {pattern!r} can never match: {why}"
                log.warning("%s", text)
                self.show(text, types.MessageType.Warning)

    @staticmethod
    def _mapping(value: Any) -> Any:
        if isinstance(value, dict):
            return value
        if value is None or value == []:
            # An empty list is how an editor in Lua (Neovim) sends an empty table: no settings.
            return {}
        return value  # config.load reports "expected a table of settings"

    def report_config(self, issues: list[ConfigIssue]) -> None:
        for issue in issues:
            text = str(issue)
            if issue.severity == "error":
                log.error("%s", text)
                self.show(text, types.MessageType.Error)
            else:
                log.warning("%s", text)
                self.log_to_client(text, types.MessageType.Warning)

    # -------------------------------------------------------------- talking to the editor

    def show(self, message: str, kind: types.MessageType = types.MessageType.Info) -> None:
        try:
            self.window_show_message(types.ShowMessageParams(type=kind, message=message))
        except Exception:  # the transport may already be closed at shutdown
            log.debug("could not show message", exc_info=True)

    def log_to_client(self, message: str, kind: types.MessageType = types.MessageType.Log) -> None:
        try:
            self.window_log_message(types.LogMessageParams(type=kind, message=message))
        except Exception:
            log.debug("could not log to client", exc_info=True)

    def report_server_error(self, error: Exception, source: Any) -> None:
        """Internals go to the log only; the user gets a short message they can act on."""
        if transport.is_unreadable_message(source):
            # An unreadable message from the editor: one log line (a malformed message per
            # keystroke must not fill the log with tracebacks), nothing the user can do.
            detail = str(error).splitlines()[0][:200] if str(error) else type(error).__name__
            log.warning("unreadable message from the editor: %s", detail)
            if isinstance(error, json.JSONDecodeError | UnicodeDecodeError):
                transport.send_parse_error(self, detail)
            return
        log.error(
            "internal error (%s): %s", getattr(source, "__name__", source), error, exc_info=error
        )
        if transport.is_failed_request(source):
            return  # the request's error reply already says what failed
        self.show(
            "mmx-lsp hit an internal error; the log has details (mmx: show log).",
            types.MessageType.Error,
        )

    # -------------------------------------------------------------- transport

    def serve_stdio(self) -> None:
        """Serve over stdin/stdout (see `transport.serve_stdio`)."""
        transport.serve_stdio(self)

    # -------------------------------------------------------------- background work

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self.tasks.discard(t)
            if not t.cancelled() and t.exception() is not None:
                log.error("background task %s failed", name, exc_info=t.exception())

        task.add_done_callback(done)
        return task

    async def learn_answer_sizes(self) -> None:
        """Seed the answer sizes (and each model's count of prompt tokens) with the recent
        requests in the metrics database, so that pre-call estimates know each model's
        habits from the first request."""
        try:
            requests = await asyncio.to_thread(self.metrics.recent_sizes)
        except Exception as exc:  # the database is damaged or gone: the store says so
            log.info("answer sizes not read from the metrics database: %s", exc)
            return
        self.sizes.learn(requests)

    async def watch_regressions(
        self, first_s: float = REGRESSION_FIRST_CHECK_S, every_s: float = REGRESSION_CHECK_S
    ) -> None:
        """Warn once (ever, per database) about each model version whose acceptance or eval
        pass rate fell: shortly after start-up, then every `every_s`."""
        from mmx_lsp.metrics import RegressionPolicy

        await asyncio.sleep(first_s)
        while True:
            policy = RegressionPolicy.from_settings(self.settings)
            try:
                found = await asyncio.to_thread(self.metrics.new_regressions, policy)
            except Exception as exc:  # the database is damaged or gone: the store says so
                log.warning("regression watch skipped: %s", exc)
                found = []
            for regression in found:
                self.show(
                    f"{regression.message()}. Compare models with `mmx-lsp eval`, or pin the "
                    "previous version as the tier's model.",
                    types.MessageType.Warning,
                )
            await asyncio.sleep(every_s)

    def warm_up(self) -> None:
        """Import the request path (openai, the cache backends) in a worker thread once a
        document is open, so that the first suggestion does not wait for it."""
        if self._warming is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return

        def load() -> None:
            import mmx_lsp.pipeline  # noqa: F401

        self._warming = loop.run_in_executor(None, load)

    def schedule_reparse(self, uri: str) -> None:
        """Bring the whole tree up to date once typing pauses (off the keystroke path)."""
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        handle = self._idle.pop(uri, None)
        if handle is not None:
            handle.cancel()

        def reparse() -> None:
            self._idle.pop(uri, None)
            doc = self.documents.get(uri)
            if doc is not None and doc.has_tree:
                doc.tree()

        self._idle[uri] = loop.call_later(IDLE_REPARSE_S, reparse)


def create_server() -> MmxServer:
    """A fresh server with every feature registered (one per test, one per process)."""
    server = MmxServer()
    from mmx_lsp.features import code_actions, commands, completions, lifecycle, sync

    for feature in (lifecycle, sync, completions, code_actions, commands):
        feature.register(server)
    return server
