"""Replay a recorded editing session through the real server (stdio), in preview mode.

A session file has one JSON object a line: `{"ms": <time since the start>, "message": <a
JSON-RPC message the editor sent>}` (fixtures/sessions/vscode/make_session.py and
make_hour.py write them). The replay starts `python -m mmx_lsp` as an editor would, with no
API key, isolated user directories and every provider pointed at an address that is never
contacted, so nothing leaves the machine: each request is routed and priced, and no model is
called. It sends the messages in order and collects the `mmx/status` of every routed request;
the server records each request in the demo metrics database (`metrics.demo_path()`), which
`mmx-lsp stats --demo` and `report --demo` read.

By default it goes as fast as the server answers: a completion the editor asked for by itself
and did not cancel is sent as asked for by the user, so the server does not wait for typing
to pause (the routing is the same). With `realtime` every message goes at its recorded time,
as recorded. Either way a request the recording cancels is sent and then cancelled with the
recorded `$/cancelRequest`, without waiting for its answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sqlite3
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

from mmx_lsp.errors import MmxError

# Every provider of the replayed settings is pointed here, with a key variable that is unset.
PREVIEW_URL = "https://preview.invalid/v1"
PREVIEW_KEY_ENV = "MMX_REPLAY_NO_KEY"
REQUEST_TIMEOUT_S = 60.0
# Requests that are routed, and so answered with an mmx/status.
ROUTED = frozenset(
    {"textDocument/inlineCompletion", "textDocument/completion", "codeAction/resolve"}
)
STATUS_WAIT_S = 2.0


class ReplayError(MmxError):
    """The session file cannot be replayed, or the server failed."""


@dataclass
class Decision:
    """One routed request, as its `mmx/status` told it."""

    number: int
    method: str
    position: str
    status: dict[str, Any]
    cancelled: bool = False

    @property
    def tier(self) -> str:
        return str(self.status.get("tier", "?"))

    @property
    def kind(self) -> str:
        return str(self.status.get("kind", "?"))

    def estimate(self, tier: str) -> Decimal:
        value = (self.status.get("estimate_usd") or {}).get(tier)
        return Decimal(str(value)) if value is not None else Decimal(0)


@dataclass
class Recorded:
    """What the server wrote into the demo database."""

    path: Path
    requests: int = 0
    cancelled: int = 0
    cached: int = 0
    reused: int = 0


@dataclass
class Result:
    sessions: list[Path] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    keystrokes: int = 0
    messages: int = 0
    listings: int = 0
    # Routed requests sent, and those the editor cancelled in the recording.
    requests: int = 0
    cancelled: int = 0
    recorded_ms: int = 0
    seconds: float = 0.0
    files: set[str] = field(default_factory=set)
    recorded: Recorded | None = None

    def total(self, tier: str | None = None) -> Decimal:
        """Estimated cost of the routed choices (or of always using `tier`)."""
        return sum((d.estimate(tier or d.tier) for d in self.decisions), Decimal(0))


def read_session(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(milliseconds since the start, message) of each line of a session file."""
    try:
        lines = path.read_text("utf-8").splitlines()
    except OSError as exc:
        raise ReplayError(f"cannot read {path}: {exc.strerror}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except ValueError as exc:
            raise ReplayError(f"{path}:{number}: not JSON ({exc})") from None
        message = record.get("message") if isinstance(record, dict) else None
        if not isinstance(message, dict) or "method" not in message:
            raise ReplayError(f"{path}:{number}: expected {{'ms': …, 'message': {{method, …}}}}")
        ms = record.get("ms", 0)
        yield (int(ms) if isinstance(ms, int | float) else 0), message


def preview_options(options: Any, database: Path | None = None) -> dict[str, Any]:
    """The recorded initializationOptions with every provider made unreachable and keyless,
    and the metrics going to `database` (none when it is None)."""
    merged: dict[str, Any] = dict(options) if isinstance(options, dict) else {}
    providers = merged.get("providers")
    names = list(providers) if isinstance(providers, dict) else []
    tiers = merged.get("tiers")
    if isinstance(tiers, dict):
        names += [t.get("provider", "openai") for t in tiers.values() if isinstance(t, dict)]
    providers = dict(providers) if isinstance(providers, dict) else {}
    for name in set(names) | {"openai"}:
        entry = providers.get(name)
        entry = dict(entry) if isinstance(entry, dict) else {}
        entry.update(base_url=PREVIEW_URL, api_key_env=PREVIEW_KEY_ENV, max_retries=0)
        providers[name] = entry
    merged["providers"] = providers
    merged["cache"] = {"backend": "off"}
    if database is not None:
        merged["metrics"] = {"path": str(database)}
    return merged


def _environment(home: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.endswith("_API_KEY") and k != PREVIEW_KEY_ENV
    }
    for name in ("XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_STATE_HOME"):
        env[name] = str(home / name.lower())
    return env


class _Connection:
    """A minimal JSON-RPC client over the server's stdin/stdout."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdin is not None and process.stdout is not None
        self.process = process
        self._stdin = process.stdin
        self._stdout = process.stdout
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self.statuses: list[dict[str, Any]] = []
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def spawn(
        cls, home: Path, command: Sequence[str] = (), stderr: IO[str] | None = None
    ) -> _Connection:
        """The server (`command`, default `python -m mmx_lsp`) started over stdio, as an editor
        starts it, with its settings, cache and data under `home` and no API key."""
        process = await asyncio.create_subprocess_exec(
            *(command or (sys.executable, "-m", "mmx_lsp")),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr if stderr is not None else asyncio.subprocess.DEVNULL,
            env=_environment(home),
        )
        return cls(process)

    async def status_after(self, count: int) -> None:
        """Wait (briefly) until more than `count` statuses have arrived."""
        loop = asyncio.get_running_loop()
        end = loop.time() + STATUS_WAIT_S
        while len(self.statuses) <= count and loop.time() < end:
            await asyncio.sleep(0.005)

    async def send(self, message: dict[str, Any]) -> None:
        data = json.dumps(message, separators=(",", ":")).encode("utf-8")
        self._stdin.write(b"Content-Length: %d\r\n\r\n" % len(data) + data)
        await self._stdin.drain()

    async def request(self, message: dict[str, Any]) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[message["id"]] = future
        await self.send(message)
        return await asyncio.wait_for(future, REQUEST_TIMEOUT_S)

    async def _read(self) -> None:
        try:
            while True:
                length = None
                while True:
                    line = await self._stdout.readline()
                    if not line:
                        raise EOFError
                    if line in (b"\r\n", b"\n"):
                        break
                    name, _, value = line.decode("ascii").partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if length is None:
                    continue
                message = json.loads(await self._stdout.readexactly(length))
                await self._dispatch(message)
        except (EOFError, asyncio.IncompleteReadError, ConnectionError):
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ReplayError("the server closed its output"))

    async def _dispatch(self, message: dict[str, Any]) -> None:
        method = message.get("method")
        if method is None:
            future = self._pending.pop(message.get("id"), None)
            if future is not None and not future.done():
                if "error" in message:
                    future.set_exception(ReplayError(str(message["error"].get("message"))))
                else:
                    future.set_result(message.get("result"))
            return
        if "id" in message:
            # A request from the server (progress tokens, configuration): a null answer.
            await self.send({"jsonrpc": "2.0", "id": message["id"], "result": None})
            return
        if method == "mmx/status":
            self.statuses.append(message.get("params") or {})

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def _where(message: dict[str, Any]) -> str:
    """`file:line:col` of a completion, `file:first-last` (lines) of an action's selection."""
    params = message.get("params") or {}
    data: dict[str, Any] = params["data"] if isinstance(params.get("data"), dict) else {}
    uri = (params.get("textDocument") or {}).get("uri") or data.get("uri") or ""
    name = uri.rsplit("/", 1)[-1]
    where = params.get("position")
    if isinstance(where, dict):
        return f"{name}:{where.get('line', 0) + 1}:{where.get('character', 0) + 1}"
    rng = data.get("range") or params.get("range")
    if not isinstance(rng, dict):
        return name
    start, end = rng.get("start") or {}, rng.get("end") or {}
    last = end.get("line", 0) + (1 if end.get("character", 0) else 0)
    return f"{name}:{start.get('line', 0) + 1}-{max(last, start.get('line', 0) + 1)}"


def _invoked(message: dict[str, Any]) -> dict[str, Any]:
    """The completion request as if the user had asked for it (no typing pause to wait)."""
    params = dict(message.get("params") or {})
    params["context"] = {**(params.get("context") or {}), "triggerKind": 1}
    return {**message, "params": params}


async def replay(
    path: Path,
    *,
    server: list[str] | None = None,
    stderr: IO[str] | None = None,
    realtime: bool = False,
    database: Path | None = None,
    result: Result | None = None,
) -> Result:
    """Send the session to a fresh server process; the statuses it reported, in order.

    At the recorded pace with `realtime`; else as fast as the server answers, with the
    completions the editor asked for by itself and did not cancel sent as asked for by the
    user (the same routing, without the server's pause for typing). A request the recording
    cancels is sent, and cancelled, as recorded. The server records into `database`."""
    records = list(read_session(path))
    cancelled = {
        (m.get("params") or {}).get("id") for _, m in records if m["method"] == "$/cancelRequest"
    }
    result = result if result is not None else Result()
    result.sessions.append(path)
    result.messages += len(records)
    result.recorded_ms += int(records[-1][0]) if records else 0
    in_flight: list[asyncio.Future[Any]] = []
    with tempfile.TemporaryDirectory(prefix="mmx-replay-") as home:
        connection = await _Connection.spawn(Path(home), server or (), stderr)
        process = connection.process
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            for ms, message in records:
                if realtime:
                    await asyncio.sleep(max(0.0, began + ms / 1000 - loop.time()))
                method = message["method"]
                if method == "initialize":
                    params = dict(message.get("params") or {})
                    params["initializationOptions"] = preview_options(
                        params.get("initializationOptions"), database
                    )
                    message = {**message, "params": params}
                if method == "textDocument/didChange":
                    result.keystrokes += 1
                    uri = ((message.get("params") or {}).get("textDocument") or {}).get("uri")
                    result.files.add(str(uri).rsplit("/", 1)[-1])
                if method == "exit":
                    await connection.send(message)
                    break
                if "id" not in message:
                    await connection.send(message)
                    continue
                if method in ROUTED:
                    result.requests += 1
                if message["id"] in cancelled:
                    # The editor cancels it when the next key comes: sent, not waited for.
                    result.cancelled += 1
                    in_flight.append(asyncio.ensure_future(connection.request(message)))
                    continue
                sent = message
                if not realtime and method in ROUTED and method != "codeAction/resolve":
                    sent = _invoked(message)
                before = len(connection.statuses)
                await connection.request(sent)
                if method in ROUTED:
                    # An inline completion's status follows its answer (the ghost text first).
                    await connection.status_after(before)
                if method == "textDocument/codeAction":
                    result.listings += 1
                for status in connection.statuses[before:]:
                    result.decisions.append(
                        Decision(message["id"], method, _where(message), status)
                    )
            await asyncio.gather(*in_flight, return_exceptions=True)
            try:
                await asyncio.wait_for(process.wait(), 10)
            except TimeoutError:
                process.kill()
                await process.wait()
        finally:
            await connection.close()
            if process.returncode is None:
                process.kill()
                await process.wait()
    return result


def read_recorded(path: Path) -> Recorded:
    """Counts of what the server wrote into the database at `path`."""
    recorded = Recorded(path)
    if not path.exists():
        return recorded
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    try:
        row = conn.execute(
            "SELECT count(*), coalesce(sum(cancelled), 0), coalesce(sum(cached), 0),"
            " coalesce(sum(coalesce(json_extract(extra, '$.reused'), 0)), 0) FROM requests"
        ).fetchone()
    finally:
        conn.close()
    recorded.requests, recorded.cancelled, recorded.cached, recorded.reused = map(int, row)
    return recorded


def remove_database(path: Path) -> None:
    """A fresh demo database for each replay (SQLite's journal files included)."""
    for name in (path.name, f"{path.name}-wal", f"{path.name}-shm", f"{path.name}-journal"):
        with contextlib.suppress(FileNotFoundError):
            (path.parent / name).unlink()


def run(
    paths: Sequence[Path],
    *,
    realtime: bool = False,
    database: Path | None = None,
    stderr: IO[str] | None = None,
) -> Result:
    """Replay each session in turn, recording into `database` (replaced)."""
    if database is not None:
        remove_database(database)
        database.parent.mkdir(parents=True, exist_ok=True)
    result = Result()
    started = time.monotonic()
    for path in paths:
        asyncio.run(
            replay(path, realtime=realtime, database=database, result=result, stderr=stderr)
        )
    result.seconds = time.monotonic() - started
    if database is not None:
        result.recorded = read_recorded(database)
    return result


def main(
    paths: Sequence[Path],
    *,
    json_output: bool = False,
    verbose: bool = False,
    realtime: bool = False,
    record: bool = True,
    out: IO[str] = sys.stdout,
) -> int:
    from mmx_lsp import metrics
    from mmx_lsp.replay_account import account, as_json, every_decision

    database = metrics.demo_path() if record else None
    try:
        result = run(paths, realtime=realtime, database=database)
    except (ReplayError, sqlite3.Error) as exc:
        print(f"mmx-lsp replay: {exc}", file=sys.stderr)
        return 1
    if not result.decisions:
        print("mmx-lsp replay: the server reported no routed request", file=sys.stderr)
        return 1
    if json_output:
        json.dump(as_json(result), out, indent=2)
        out.write("\n")
        return 0
    if verbose:
        every_decision(result, out)
        out.write("\n")
    account(result, out)
    return 0
