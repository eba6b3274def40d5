"""Reliability under stress: the real server process against loopback providers with faults.

Every request is answered; every provider call that completed is billed exactly once (the
stubs' own count of completed calls, priced independently, against the metrics database and
the session's stats); no row is lost at a clean exit or at EOF; nothing excluded is ever sent;
no key shows up anywhere; hostile input (malformed JSON-RPC, lone surrogates, binary and huge
documents) gets an answer, not an internal error.
"""

from __future__ import annotations

import asyncio
import json
import os
import select
import sqlite3
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

from tests.e2e.conftest import isolated_env, open_text, spawn_stdio, stats_json, stop
from tests.e2e.test_model_calls import (
    CHEAP_PRICE,
    MILLION,
    PREMIUM_PRICE,
    collect_statuses,
    eventually,
    settings,
)
from tests.support.openai_stub import StubServer

pytestmark = pytest.mark.e2e

CANARY_KEY = "sk-canary-Qm7Zp4Lx9Vt2Wr8Ys5Nb3Kd6"
PRICES = {"stub-cheap": CHEAP_PRICE, "stub-premium": PREMIUM_PRICE}
ANSWER_S = 15.0  # generous: a loaded CI machine


# --------------------------------------------------------------------------- helpers


async def start_logged(
    tmp: Path, init_options: Any, env: dict[str, str] | None = None
) -> LanguageClient:
    """The server as an editor starts it, logging at -v to `tmp/server.log`."""
    config = ClientServerConfig(
        server_command=[
            sys.executable,
            "-m",
            "mmx_lsp",
            "--log-file",
            str(tmp / "server.log"),
            "-v",
        ],
        server_env={**isolated_env(tmp), "MMX_TEST_KEY": CANARY_KEY, **(env or {})},
    )
    client = await config.start()
    assert isinstance(client, LanguageClient)
    await client.initialize_session(
        types.InitializeParams(
            capabilities=client_capabilities("visual_studio_code"),
            root_uri=tmp.as_uri(),
            workspace_folders=[types.WorkspaceFolder(uri=tmp.as_uri(), name=tmp.name)],
            initialization_options=init_options,
        )
    )
    return client


def with_retries(options: dict[str, Any], provider: str, retries: int) -> dict[str, Any]:
    options["providers"][provider]["max_retries"] = retries
    return options


async def ask(client: LanguageClient, uri: str, line: int, character: int = 4) -> list[str]:
    """An inline completion the user asked for (no debounce); the texts offered."""
    result = await asyncio.wait_for(
        client.text_document_inline_completion_async(
            types.InlineCompletionParams(
                text_document=types.TextDocumentIdentifier(uri),
                position=types.Position(line, character),
                context=types.InlineCompletionContext(
                    trigger_kind=types.InlineCompletionTriggerKind.Invoked
                ),
            )
        ),
        ANSWER_S,
    )
    if result is None:
        return []
    found = result.items if isinstance(result, types.InlineCompletionList) else result
    return [item.insert_text for item in found if isinstance(item.insert_text, str)]


def functions(count: int) -> str:
    """`count` functions with an empty body line each (at rows 1, 3, 5 …)."""
    return "".join(f"def f{i}(a, b):\n    \n" for i in range(count))


def billed_by_stubs(*stubs: StubServer) -> tuple[Decimal, int]:
    """What the providers would bill for the calls they completed, priced independently."""
    total, calls = Decimal(0), 0
    for stub in stubs:
        for call in stub.completed:
            price_in, price_out = PRICES[call["model"]]
            total += (call["prompt_tokens"] * price_in + call["completion_tokens"] * price_out) / (
                MILLION
            )
            calls += 1
    return total, calls


def database(tmp: Path) -> list[dict[str, Any]]:
    (path,) = (tmp / "xdg_data_home").rglob("metrics.sqlite3")
    conn = sqlite3.connect(path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM requests ORDER BY id")]
    finally:
        conn.close()


def billed_in_database(rows: list[dict[str, Any]]) -> tuple[Decimal, int]:
    """The total cost of the rows and the number of model calls they say were answered."""
    total = sum((Decimal(r["cost_usd"]) for r in rows), Decimal(0))
    calls = sum(len(json.loads(r["attempts"] or "[]")) for r in rows)
    return total, calls


# --------------------------------------------------------------------------- provider faults


async def test_every_provider_fault_is_answered_and_every_completed_call_billed_once(
    tmp_path: Path,
) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a - b") as premium:
        options = with_retries(settings(tmp_path, cheap, premium), "cheapco", 1)
        cheap.retry_after = 0.2
        cheap.delay_s = 0.3
        client = await start_logged(tmp_path, options)
        statuses = collect_statuses(client)
        try:
            uri = open_text(client, (tmp_path / "f.py").as_uri(), functions(40), "python")
            line = iter(range(1, 80, 2))
            # (cheap tier's modes for the call and its retry, premium's mode, expected answer)
            matrix = [
                (("500", "500"), "ok", "return a - b"),  # falls back to premium
                (("429", "ok"), "ok", "return a + b"),  # waits for Retry-After, retried
                (("slow",), "ok", "return a + b"),
                (("garbage",), "ok", "return a - b"),
                (("bad_sse",), "ok", "return a - b"),
                (("disconnect", "disconnect"), "ok", "return a - b"),  # dropped mid-stream
                (("500", "500"), "500", None),  # both tiers down: an empty answer
            ]
            asked = 0
            for cheap_modes, premium_mode, expected in matrix:
                cheap.queue_modes(*cheap_modes)
                premium.mode = premium_mode
                texts = await ask(client, uri, next(line))
                assert texts == ([expected] if expected else []), cheap_modes
                premium.mode = "ok"
                # A healthy call between faults keeps the breaker closed: each fault is seen.
                assert await ask(client, uri, next(line)) == ["return a + b"]
                asked += 2
            await eventually(lambda: len(statuses) == asked)
            assert "HTTP 500" in statuses[-2].error
            stats = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="mmx.stats", arguments=[{}])
            )
        finally:
            await stop(client)
        expected_total, completed = billed_by_stubs(cheap, premium)
    rows = database(tmp_path)
    assert len(rows) == asked, "one row per request"
    total, answered = billed_in_database(rows)
    assert total == expected_total, "every completed call billed exactly once"
    assert answered >= completed
    assert Decimal(str(stats["totals"]["cost_usd"])).quantize(Decimal("0.000001")) == (
        expected_total.quantize(Decimal("0.000001"))
    )
    session = sum((Decimal(s.cost_usd_exact) for s in statuses), Decimal(0))
    assert session == expected_total


# --------------------------------------------------------------------------- malformed JSON-RPC


def _frame(body: bytes) -> bytes:
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class _Reader:
    """LSP messages from the server's stdout, with a deadline (a missing reply fails)."""

    def __init__(self, stream: Any) -> None:
        self.fd, self.buffer = stream.fileno(), b""
        self.replies: dict[object, dict[str, Any]] = {}

    def message(self, deadline: float) -> dict[str, Any]:
        while b"\r\n\r\n" not in self.buffer:
            self._more(deadline)
        header, _, rest = self.buffer.partition(b"\r\n\r\n")
        length = int(header.split(b"Content-Length:")[1].split(b"\r\n")[0])
        self.buffer = rest
        while len(self.buffer) < length:
            self._more(deadline)
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return json.loads(body)

    def _more(self, deadline: float) -> None:
        left = deadline - time.monotonic()
        assert left > 0 and select.select([self.fd], [], [], left)[0], "no reply in time"
        chunk = os.read(self.fd, 1 << 16)
        assert chunk, "the server closed its output"
        self.buffer += chunk

    def reply_to(self, msg_id: object, timeout: float = ANSWER_S) -> dict[str, Any]:
        """The reply to `msg_id` (replies to other requests read meanwhile are kept)."""
        deadline = time.monotonic() + timeout
        while msg_id not in self.replies:
            message = self.message(deadline)
            if "method" not in message:
                self.replies[message.get("id")] = message
        return self.replies.pop(msg_id)


def test_malformed_json_rpc_gets_error_replies_and_one_log_line_each(tmp_path: Path) -> None:
    log_file = tmp_path / "server.log"
    server = spawn_stdio(tmp_path, "--log-file", str(log_file), "-v")
    assert server.stdin is not None and server.stdout is not None
    reader = _Reader(server.stdout)
    try:

        def send(body: bytes) -> None:
            assert server.stdin is not None
            server.stdin.write(_frame(body))
            server.stdin.flush()

        send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}
            ).encode()
        )
        assert "result" in reader.reply_to(1)
        send(b'{"jsonrpc": "2.0", "method": "initialized", "params": {}}')
        bad_bodies = [
            b'{"jsonrpc": "2.0", "id": 2, "method": "textDocument/inlineCompletion", "par',
            b"\xff\xfe not utf-8 \x00",
            b"[1, 2,",
        ]
        for body in bad_bodies:
            send(body)
            reply = reader.reply_to(None)
            assert reply["error"]["code"] == -32700
            assert reply["error"]["message"].startswith("Parse error")
        # Valid JSON, params of the wrong shape: an error reply naming the method.
        send(
            json.dumps(
                {"jsonrpc": "2.0", "id": 3, "method": "textDocument/codeAction", "params": 7}
            ).encode()
        )
        assert "codeAction" in reader.reply_to(3)["error"]["message"]
        # And the server still answers.
        send(json.dumps({"jsonrpc": "2.0", "id": 4, "method": "shutdown"}).encode())
        assert reader.reply_to(4).get("error") is None
        send(b'{"jsonrpc": "2.0", "method": "exit"}')
        assert server.wait(timeout=30) == 0
    finally:
        if server.poll() is None:
            server.kill()
    log = log_file.read_text("utf-8")
    assert "Traceback" not in log
    assert log.count("unreadable message from the editor") == len(bad_bodies)


# --------------------------------------------------------------------------- hostile documents


def _minified(chars: int) -> str:
    unit = "function f(a,b){return a+b}var x=[1,2,3].map(function(v){return v*2});"
    return (unit * (chars // len(unit) + 1))[:chars]


async def test_surrogate_binary_and_huge_documents_are_served_without_stalls(
    tmp_path: Path,
) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a + b") as premium:
        client = await start_logged(tmp_path, settings(tmp_path, cheap, premium))
        statuses = collect_statuses(client)
        try:
            # Lone surrogates: tracked, served, and the user is told in words.
            odd = open_text(
                client,
                (tmp_path / "odd.py").as_uri(),
                "s = '\ud800'\ndef f(a, b):\n    \n",
                "python",
            )
            assert await ask(client, odd, 2) == ["return a + b"]
            assert any("unpaired UTF-16 surrogate" in m.message for m in client.messages)
            # Binary content: an answer (scored by size), not an error.
            blob = open_text(client, (tmp_path / "blob.bin").as_uri(), "\x00\x01ab\x00" * 999, "")
            await ask(client, blob, 0, 2)
            # 3.6 MB on one line: keystrokes do not stall other requests, and the estimate
            # is what the prompt sent costs, not the whole line's price.
            huge = open_text(
                client, (tmp_path / "app.min.js").as_uri(), _minified(3_600_000), "javascript"
            )
            small = open_text(client, (tmp_path / "s.py").as_uri(), functions(3), "python")
            column = 1_800_000
            slowest = 0.0
            for version in range(2, 22):
                client.text_document_did_change(
                    types.DidChangeTextDocumentParams(
                        text_document=types.VersionedTextDocumentIdentifier(
                            version=version, uri=huge
                        ),
                        content_changes=[
                            types.TextDocumentContentChangePartial(
                                range=types.Range(
                                    types.Position(0, column), types.Position(0, column)
                                ),
                                text="x",
                            )
                        ],
                    )
                )
                column += 1
                started = time.monotonic()
                decision = await client.workspace_execute_command_async(
                    types.ExecuteCommandParams(
                        command="mmx.explain",
                        arguments=[{"uri": huge, "position": {"line": 0, "character": column}}],
                    )
                )
                slowest = max(slowest, time.monotonic() - started)
            assert slowest < 1.0, f"a keystroke's decision took {slowest:.2f} s"
            started = time.monotonic()
            assert await ask(client, small, 1) == ["return a + b"]
            assert time.monotonic() - started < 2.0
            await eventually(lambda: len(statuses) == 3)  # odd.py, blob.bin, s.py
            await ask(client, huge, 0, column)
            await eventually(lambda: len(statuses) == 4)
            status = statuses[-1]
            # The huge line's prompt: the line limit's budget's worth (192 tokens, 4 chars each).
            assert status.input_tokens > 150, "the huge line's prompt (its budget's worth)"
            # Priced from the prompt that is sent: its input tokens as the stub counts them
            # (the answer's length is the stub's, not a model's).
            estimated_input = decision["estimate_tokens"]["cheap"][0]
            assert status.cost_usd > 0
            assert status.input_tokens / 2 <= estimated_input <= 2 * status.input_tokens, (
                estimated_input,
                status.input_tokens,
            )
            assert decision["estimate_usd"]["premium"] < 1
            assert not [m for m in client.messages if "internal error" in m.message]
        finally:
            await stop(client)
    assert "Traceback" not in (tmp_path / "server.log").read_text("utf-8")


# --------------------------------------------------------------------------- secrets


async def test_a_canary_key_is_nowhere_but_in_the_authorization_header(tmp_path: Path) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a + b") as premium:
        options = settings(tmp_path, cheap, premium)
        # A second key pasted into api_key_env by mistake, on a provider no tier uses.
        pasted = "sk-pasted-Hv3Jd8Lq2Mz7Rt5Wx9Cb4Np"
        options["providers"]["spare"] = {"base_url": cheap.base_url, "api_key_env": pasted}
        client = await start_logged(tmp_path, options)
        statuses = collect_statuses(client)
        try:
            uri = open_text(client, (tmp_path / "f.py").as_uri(), functions(4), "python")
            assert await ask(client, uri, 1) == ["return a + b"]
            cheap.mode = premium.mode = "401"  # the stub echoes the refused key, as OpenAI does
            assert await ask(client, uri, 3) == []
            await eventually(lambda: len(statuses) == 2)
            stats = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="mmx.stats", arguments=[{}])
            )
        finally:
            await stop(client)
        assert cheap.request_headers[0]["authorization"] == f"Bearer {CANARY_KEY}"
    seen = [json.dumps(stats)]
    seen += [m.message for m in client.messages] + [m.message for m in client.log_messages]
    seen += [repr(s) for s in statuses]
    assert any("refused the key" in text for text in seen)
    assert any("looks like a key itself" in text for text in seen)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(p.name == "server.log" for p in files)
    for secret in (CANARY_KEY, pasted):
        assert not [text for text in seen if secret in text]
        for path in files:
            assert secret.encode() not in path.read_bytes(), path


# --------------------------------------------------------------------------- cancellation storm


def inline_params(uri: str, line: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        text_document=types.TextDocumentIdentifier(uri),
        position=types.Position(line, 4),
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
    )


async def _round(client: LanguageClient, uri: str, line: int, pattern: str) -> list[bool]:
    """Two identical requests (they share one call); `pattern` says which are cancelled:
    "first", "second", "both" or "alone" (one request, cancelled). True for each answered."""
    ids = [f"storm-{line}-{n}" for n in range(1 if pattern == "alone" else 2)]
    pending = []
    for msg_id in ids:
        pending.append(
            asyncio.ensure_future(
                client.protocol.send_request_async(
                    types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, line), msg_id=msg_id
                )
            )
        )
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.1)  # well before the call's end (its stream takes about 0.5 s)
    cancel = {"first": ids[:1], "second": ids[1:], "both": ids, "alone": ids}[pattern]
    for msg_id in cancel:
        client.protocol.notify(types.CANCEL_REQUEST, types.CancelParams(id=msg_id))
    answered = []
    for future in pending:
        try:
            await asyncio.wait_for(future, ANSWER_S)
            answered.append(True)
        except TimeoutError:
            raise
        except Exception:  # the cancelled one: -32800
            answered.append(False)
    return answered


async def test_a_cancellation_storm_bills_every_completed_call_exactly_once(
    tmp_path: Path,
) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer() as premium:
        cheap.chunk_delay_s = 0.12
        client = await start_logged(tmp_path, settings(tmp_path, cheap, premium))
        statuses = collect_statuses(client)
        try:
            uri = open_text(client, (tmp_path / "f.py").as_uri(), functions(40), "python")
            patterns = ["first", "second", "both", "alone"] * 4
            outcomes = await asyncio.gather(
                *(_round(client, uri, 2 * n + 1, p) for n, p in enumerate(patterns))
            )
            for pattern, answered in zip(patterns, outcomes, strict=True):
                expected = {
                    "first": [False, True],
                    "second": [True, False],
                    "both": [False, False],
                    "alone": [False],
                }
                assert answered == expected[pattern], pattern
            await eventually(lambda: len(statuses) == 8)  # one per answered request
            # A shared call's answer is cached even when the request that started it left.
            first_round = patterns.index("first")
            calls = len(cheap.requests)
            assert await ask(client, uri, 2 * first_round + 1) == ["return a + b"]
            assert len(cheap.requests) == calls
            stats = await client.workspace_execute_command_async(
                types.ExecuteCommandParams(command="mmx.stats", arguments=[{}])
            )
        finally:
            await stop(client)
        expected_total, completed = billed_by_stubs(cheap, premium)
    assert completed == 8, "the rounds where someone waited for the answer"
    rows = database(tmp_path)
    # A row for every answered request (the 8 of the storm and the cached one), and one for
    # each cancelled request that had been routed (one cancelled before it started has none).
    assert sum(1 for r in rows if not r["cancelled"]) == 9
    assert len(rows) <= 29
    total, _ = billed_in_database(rows)
    assert total == expected_total
    assert sum(1 for r in rows if Decimal(r["cost_usd"]) > 0) == completed, "none billed twice"
    session = sum((Decimal(s.cost_usd_exact) for s in statuses), Decimal(0))
    cancelled_rows = sum((Decimal(r["cost_usd"]) for r in rows if r["cancelled"]), Decimal(0))
    assert session + cancelled_rows == expected_total
    assert Decimal(str(stats["totals"]["cost_usd"])).quantize(Decimal("1e-9")) == (
        expected_total.quantize(Decimal("1e-9"))
    )
    cli = stats_json(tmp_path)["totals"]
    assert Decimal(str(cli["cost_usd"])).quantize(Decimal("1e-9")) == (
        expected_total.quantize(Decimal("1e-9"))
    )


# --------------------------------------------------------------------------- rows at exit


def test_no_row_is_lost_when_the_editor_closes_stdin(tmp_path: Path) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer() as premium:
        options = settings(tmp_path, cheap, premium)
        server = spawn_stdio(tmp_path)
        assert server.stdin is not None and server.stdout is not None
        reader = _Reader(server.stdout)
        try:

            def send(payload: dict[str, Any]) -> None:
                assert server.stdin is not None
                server.stdin.write(_frame(json.dumps(payload).encode()))
                server.stdin.flush()

            init = {"capabilities": {}, "initializationOptions": options}
            send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init})
            reader.reply_to(0)
            send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
            uri = (tmp_path / "f.py").as_uri()
            item = {"uri": uri, "languageId": "python", "version": 1, "text": functions(20)}
            send(
                {
                    "jsonrpc": "2.0",
                    "method": "textDocument/didOpen",
                    "params": {"textDocument": item},
                }
            )
            for n in range(15):
                params = {
                    "textDocument": {"uri": uri},
                    "position": {"line": 2 * n + 1, "character": 4},
                    "context": {"triggerKind": 1},
                }
                send(
                    {
                        "jsonrpc": "2.0",
                        "id": n + 1,
                        "method": "textDocument/inlineCompletion",
                        "params": params,
                    }
                )
            for n in range(15):
                reader.reply_to(n + 1)
            # One more in flight (the model takes seconds), then the editor goes away. Waited
            # for by the stub's count from here: on a loaded machine the fifteen made only
            # fourteen calls, and the wait ran until the slow answer had come back.
            answered = len(cheap.requests)
            cheap.queue_modes("slow")
            cheap.delay_s = 5
            params = {
                "textDocument": {"uri": uri},
                "position": {"line": 33, "character": 4},
                "context": {"triggerKind": 1},
            }
            send(
                {
                    "jsonrpc": "2.0",
                    "id": 99,
                    "method": "textDocument/inlineCompletion",
                    "params": params,
                }
            )
            deadline = time.monotonic() + ANSWER_S
            while len(cheap.requests) == answered and time.monotonic() < deadline:
                time.sleep(0.02)
            server.stdin.close()
            server.wait(timeout=30)
        finally:
            if server.poll() is None:
                server.kill()
    rows = database(tmp_path)
    assert len(rows) == 16
    assert [r["cancelled"] for r in rows].count(1) == 1, "the request in flight left a row"


async def test_a_request_in_flight_at_shutdown_leaves_a_row(tmp_path: Path) -> None:
    with StubServer(reply="return a + b", mode="slow") as cheap, StubServer() as premium:
        cheap.delay_s = 5
        client = await start_logged(tmp_path, settings(tmp_path, cheap, premium))
        uri = open_text(client, (tmp_path / "f.py").as_uri(), functions(2), "python")
        pending = asyncio.ensure_future(
            client.protocol.send_request_async(
                types.TEXT_DOCUMENT_INLINE_COMPLETION, inline_params(uri, 1)
            )
        )
        await eventually(lambda: len(cheap.requests) == 1)
        started = time.monotonic()
        await stop(client)
        assert time.monotonic() - started < 4, "shutdown does not wait for the model"
        pending.cancel()
    [row] = database(tmp_path)
    assert row["cancelled"] == 1 and Decimal(row["cost_usd"]) == 0


# --------------------------------------------------------------------------- circuit breaker


async def test_a_tier_that_keeps_failing_is_skipped_and_the_status_says_so(
    tmp_path: Path,
) -> None:
    with StubServer() as gone:
        refused = gone.base_url  # nothing listens there any more
    with StubServer(reply="return a + b") as premium:
        options = settings(tmp_path, premium, premium)
        options["providers"]["cheapco"]["base_url"] = refused
        client = await start_logged(tmp_path, options)
        statuses = collect_statuses(client)
        try:
            uri = open_text(client, (tmp_path / "f.py").as_uri(), functions(6), "python")
            for n in range(3):
                assert await ask(client, uri, 2 * n + 1) == ["return a + b"]
            started = time.monotonic()
            assert await ask(client, uri, 7) == ["return a + b"]
            skipped_in = time.monotonic() - started
            await eventually(lambda: len(statuses) == 4)
        finally:
            await stop(client)
    assert [s.tier for s in statuses] == ["premium"] * 4
    assert all("cheap tier down" in s.fallback for s in statuses[:3])
    assert statuses[3].fallback.startswith("cheap tier skipped for 30 s after 3 failures"), (
        statuses[3].fallback
    )
    assert skipped_in < 1.0


# --------------------------------------------------------------------------- privacy


PRIVATE = {
    ".env": ".env",
    "secrets/": "ops/secrets/db.py",
    "deploy/*.yaml": "deploy/prod.yaml",
    "**/*.pem": "certs/site.pem",
    "/config/credentials.py": "config/credentials.py",
}
# Paths like the excluded ones that the same patterns do not match (gitignore's rule).
PUBLIC = ["deploy/eu/prod.yaml", "lib/config/credentials.py", "env.py"]


async def test_no_pattern_form_lets_an_excluded_file_reach_a_model(tmp_path: Path) -> None:
    with StubServer(reply="return a + b") as cheap, StubServer(reply="return a + b") as premium:
        options = settings(tmp_path, cheap, premium)
        options["privacy"] = {"exclude": [*PRIVATE, "../outside/*.py"]}
        client = await start_logged(tmp_path, options)
        statuses = collect_statuses(client)
        whole = types.Range(types.Position(0, 0), types.Position(2, 0))
        try:
            for number, relative in enumerate([*PRIVATE.values(), *PUBLIC]):
                text = f"def f(a, b):\n    canary_{number} = 1\n    \n"
                uri = open_text(client, (tmp_path / relative).as_uri(), text, "python")
                await ask(client, uri, 2)
                await client.text_document_completion_async(
                    types.CompletionParams(
                        text_document=types.TextDocumentIdentifier(uri),
                        position=types.Position(2, 4),
                        context=types.CompletionContext(
                            trigger_kind=types.CompletionTriggerKind.Invoked
                        ),
                    )
                )
                for kind in ("refactor.rewrite.mmx", "refactor.mmx.explain"):
                    actions = await client.text_document_code_action_async(
                        types.CodeActionParams(
                            text_document=types.TextDocumentIdentifier(uri),
                            range=whole,
                            context=types.CodeActionContext(diagnostics=[], only=[kind]),
                        )
                    )
                    for action in actions or []:
                        if isinstance(action, types.CodeAction):
                            await client.code_action_resolve_async(action)
            await eventually(lambda: len(statuses) >= 4 * len(PUBLIC))
        finally:
            await stop(client)
        sent = json.dumps(cheap.requests + premium.requests)
    for number in range(len(PRIVATE)):
        assert f"canary_{number} " not in sent, list(PRIVATE)[number]
    for number in range(len(PRIVATE), len(PRIVATE) + len(PUBLIC)):
        assert f"canary_{number} " in sent, "a public file does reach the model"
    warnings = [m.message for m in client.messages if "can never match" in m.message]
    assert warnings and "../outside/*.py" in warnings[0]
