"""Replay a recorded editing session through the real server (stdio), in preview mode.

A session file has one JSON object a line: `{"ms": <time since the start>, "message": <a
JSON-RPC message the editor sent>}` (fixtures/sessions/vscode/make_session.py writes one). The
replay starts `python -m mmx_lsp` as an editor would, with no API key, isolated user
directories and every provider pointed at an address that is never contacted, so nothing
leaves the machine: each request is routed and priced, and no model is called. It sends the
messages in order, waiting for each request's answer, and collects the `mmx/status` of every
routed request.

`$/cancelRequest` messages of the recording are not sent: the replay waits for each answer,
so the request has already been answered; such requests are counted as cancelled by the
editor (with a real model their calls would have been aborted).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, Any

# Every provider of the replayed settings is pointed here, with a key variable that is unset.
PREVIEW_URL = "https://preview.invalid/v1"
PREVIEW_KEY_ENV = "MMX_REPLAY_NO_KEY"
REQUEST_TIMEOUT_S = 60.0
# Requests that are routed, and so answered with an mmx/status.
ROUTED = frozenset(
    {"textDocument/inlineCompletion", "textDocument/completion", "codeAction/resolve"}
)
STATUS_WAIT_S = 2.0


class ReplayError(Exception):
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

    def estimate(self, tier: str) -> Decimal:
        value = (self.status.get("estimate_usd") or {}).get(tier)
        return Decimal(str(value)) if value is not None else Decimal(0)


@dataclass
class Result:
    decisions: list[Decision] = field(default_factory=list)
    keystrokes: int = 0
    messages: int = 0
    listings: int = 0
    skipped_cancels: int = 0

    def total(self, tier: str | None = None) -> Decimal:
        """Estimated cost of the routed choices (or of always using `tier`)."""
        return sum((d.estimate(tier or d.tier) for d in self.decisions), Decimal(0))


def read_session(path: Path) -> Iterator[dict[str, Any]]:
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
        yield message


def preview_options(options: Any) -> dict[str, Any]:
    """The recorded initializationOptions with every provider made unreachable and keyless."""
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


def _position(message: dict[str, Any]) -> str:
    params = message.get("params") or {}
    where = params.get("position")
    if where is None:
        data = params.get("data")
        rng = (data.get("range") if isinstance(data, dict) else None) or params.get("range")
        where = rng.get("start") if isinstance(rng, dict) else None
    if not isinstance(where, dict):
        return ""
    return f"{where.get('line', 0) + 1}:{where.get('character', 0) + 1}"


async def replay(
    path: Path, *, server: list[str] | None = None, stderr: IO[str] | None = None
) -> Result:
    """Send the session to a fresh server process; the statuses it reported, in order."""
    messages = list(read_session(path))
    command = server or [sys.executable, "-m", "mmx_lsp"]
    result = Result(messages=len(messages))
    answered: set[Any] = set()
    with tempfile.TemporaryDirectory(prefix="mmx-replay-") as home:
        process = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=stderr if stderr is not None else asyncio.subprocess.DEVNULL,
            env=_environment(Path(home)),
        )
        connection = _Connection(process)
        try:
            for message in messages:
                method = message["method"]
                if method == "initialize":
                    params = dict(message.get("params") or {})
                    params["initializationOptions"] = preview_options(
                        params.get("initializationOptions")
                    )
                    message = {**message, "params": params}
                if method == "$/cancelRequest":
                    request_id = (message.get("params") or {}).get("id")
                    for decision in reversed(result.decisions):
                        if decision.number == request_id:
                            decision.cancelled = True
                            break
                    if request_id in answered:
                        result.skipped_cancels += 1
                        continue
                if method == "textDocument/didChange":
                    result.keystrokes += 1
                if method == "exit":
                    await connection.send(message)
                    break
                if "id" not in message:
                    await connection.send(message)
                    continue
                before = len(connection.statuses)
                await connection.request(message)
                answered.add(message["id"])
                if method in ROUTED:
                    # An inline completion's status follows its answer (the ghost text first).
                    await connection.status_after(before)
                if method == "textDocument/codeAction":
                    result.listings += 1
                for status in connection.statuses[before:]:
                    result.decisions.append(
                        Decision(message["id"], method, _position(message), status)
                    )
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


# ------------------------------------------------------------------------------- printing

_SHORT = {
    "textDocument/inlineCompletion": "inline",
    "textDocument/completion": "completion",
    "codeAction/resolve": "action",
}


def _usd(amount: Decimal) -> str:
    return f"${amount:.6f}"


def report(result: Result, out: IO[str]) -> None:
    out.write(
        f"{'#':>4}  {'request':<8} {'at':>7}  {'kind':<10} {'tier':<8} {'model':<16} "
        f"{'estimate':>10} {'premium':>10}\n"
    )
    for index, decision in enumerate(result.decisions, 1):
        status = decision.status
        note = "  (cancelled by the editor)" if decision.cancelled else ""
        out.write(
            f"{index:>4}  {_SHORT.get(decision.method, decision.method):<8} "
            f"{decision.position:>7}  {status.get('kind', '?'):<10} {decision.tier:<8} "
            f"{status.get('model', '?')!s:<16} {_usd(decision.estimate(decision.tier)):>10} "
            f"{_usd(decision.estimate('premium')):>10}{note}\n"
        )
    routed, premium = result.total(), result.total("premium")
    tiers: dict[str, int] = {}
    for decision in result.decisions:
        tiers[decision.tier] = tiers.get(decision.tier, 0) + 1
    share = ", ".join(f"{count} {tier}" for tier, count in sorted(tiers.items()))
    cancelled = sum(1 for d in result.decisions if d.cancelled)
    out.write("\n")
    out.write(
        f"{result.keystrokes} keystrokes, {len(result.decisions)} routed requests ({share}), "
        f"{result.listings} code action listings; {cancelled} requests were cancelled by the "
        "editor when the next key came\n"
    )
    saved = premium - routed
    percent = (saved / premium * 100) if premium else Decimal(0)
    out.write(
        f"total: routed {_usd(routed)} vs always-premium {_usd(premium)}: "
        f"{_usd(saved)} less ({percent:.1f}%)\n"
    )
    out.write("preview mode: no API key, no network; costs are the router's estimates\n")


def as_json(result: Result) -> dict[str, Any]:
    routed, premium = result.total(), result.total("premium")
    return {
        "keystrokes": result.keystrokes,
        "listings": result.listings,
        "decisions": [
            {
                "request": d.number,
                "method": d.method,
                "at": d.position,
                "kind": d.status.get("kind"),
                "tier": d.tier,
                "model": d.status.get("model"),
                "estimate_usd": str(d.estimate(d.tier)),
                "premium_usd": str(d.estimate("premium")),
                "cancelled": d.cancelled,
                "preview": d.status.get("preview"),
                "latency_ms": d.status.get("latency_ms"),
            }
            for d in result.decisions
        ],
        "total_usd": str(routed),
        "always_premium_usd": str(premium),
    }


def main(path: Path, *, json_output: bool = False, out: IO[str] = sys.stdout) -> int:
    try:
        result = asyncio.run(replay(path))
    except ReplayError as exc:
        print(f"mmx-lsp replay: {exc}", file=sys.stderr)
        return 1
    if not result.decisions:
        print("mmx-lsp replay: the server reported no routed request", file=sys.stderr)
        return 1
    if json_output:
        json.dump(as_json(result), out, indent=2)
        out.write("\n")
    else:
        report(result, out)
    return 0
