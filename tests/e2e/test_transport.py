"""Transports and raw protocol input: TCP, the log file, whole-document sync, malformed params."""

from __future__ import annotations

import io
import json
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from lsprotocol import types
from pytest_lsp import LanguageClient

from tests.e2e.conftest import command, isolated_env, open_text, spawn_stdio

pytestmark = pytest.mark.e2e


def _frame(payload: dict[str, object]) -> bytes:
    body = json.dumps(payload).encode()
    return b"Content-Length: %d\r\n\r\n%s" % (len(body), body)


class _Reader:
    """Reads LSP base-protocol messages from a socket or a pipe."""

    def __init__(self, read: Callable[[int], bytes]) -> None:
        self.read, self.buffer = read, b""

    def message(self) -> dict[str, object]:
        while b"\r\n\r\n" not in self.buffer:
            self._more()
        header, _, self.buffer = self.buffer.partition(b"\r\n\r\n")
        fields = dict(line.split(b": ", 1) for line in header.split(b"\r\n"))
        length = int(fields[b"Content-Length"])
        while len(self.buffer) < length:
            self._more()
        body, self.buffer = self.buffer[:length], self.buffer[length:]
        return json.loads(body)

    def _more(self) -> None:
        chunk = self.read(4096)
        assert chunk, "connection closed"
        self.buffer += chunk


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_tcp_transport_answers_initialize_and_logs_to_a_file(tmp_path: Path) -> None:
    port = _free_port()
    log_file = tmp_path / "mmx.log"
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mmx_lsp",
            "--tcp",
            f"127.0.0.1:{port}",
            "--log-file",
            str(log_file),
            "-v",
        ],
        env=isolated_env(tmp_path),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(200):
            try:
                conn = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                if server.poll() is not None:
                    raise AssertionError(
                        server.stderr.read().decode() if server.stderr else ""
                    ) from None
                import time

                time.sleep(0.05)
        else:
            raise AssertionError("the TCP server never listened")
        with conn:
            reader = _Reader(conn.recv)
            conn.sendall(
                _frame(
                    {
                        "jsonrpc": "2.0",
                        "id": 1,
                        "method": "initialize",
                        "params": {"processId": None, "rootUri": None, "capabilities": {}},
                    }
                )
            )
            reply = reader.message()
            assert reply["id"] == 1
            assert "inlineCompletionProvider" in reply["result"]["capabilities"]  # type: ignore[index]
            conn.sendall(_frame({"jsonrpc": "2.0", "method": "initialized", "params": {}}))
            conn.sendall(_frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"}))
            while reader.message().get("id") != 2:
                pass
    finally:
        server.kill()
        server.wait()
    assert "mmx-lsp ready" in log_file.read_text()


async def test_whole_document_changes_replace_the_text(client: LanguageClient) -> None:
    uri = open_text(client, "file:///tmp/whole.py", "x = 1\n", "python")
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            types.VersionedTextDocumentIdentifier(uri=uri, version=2),
            [
                types.TextDocumentContentChangeWholeDocument(
                    text="def a():\n    pass\n\n\ndef b():\n    pass\n"
                )
            ],
        )
    )
    decision = await command(
        client,
        "mmx.explain",
        {
            "uri": uri,
            "range": {"start": {"line": 0, "character": 0}, "end": {"line": 6, "character": 0}},
        },
    )
    assert decision["features"]["definitions_touched"] == 2


MALFORMED = [
    ("textDocument/codeAction", {"textDocument": {"uri": 3}}, "missing @ $.params.range"),
    ("textDocument/inlineCompletion", {"position": "here"}, "$.params.context"),
    ("textDocument/completion", None, "expected CompletionParams"),
    ("workspace/executeCommand", {"command": "mmx.nope", "arguments": []}, "mmx.nope"),
    ("workspace/executeCommand", {"command": "mmx.explain", "arguments": ["x"]}, "one JSON object"),
    ("mmx/unknownMethod", {}, "Method Not Found"),
]


def test_malformed_requests_get_errors_and_the_server_lives(tmp_path: Path) -> None:
    server = spawn_stdio(tmp_path)
    assert server.stdin and server.stdout
    reader = _Reader(server.stdout.read1)  # type: ignore[attr-defined]

    def send(payload: dict[str, object]) -> None:
        assert server.stdin
        server.stdin.write(_frame(payload))
        server.stdin.flush()

    def reply(request_id: int) -> dict[str, object]:
        while True:
            message = reader.message()
            if message.get("id") == request_id and "method" not in message:
                return message

    try:
        send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"processId": None, "rootUri": None, "capabilities": {}},
            }
        )
        assert "result" in reply(1)
        send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        server.stdin.write(b"Content-Length: 12\r\n\r\n{not json!!}")  # garbage on the wire
        server.stdin.write(b"\x00junk" * 40_000 + b"\r\n")  # a 200 kB line of it
        server.stdin.flush()
        for number, (method, params, words) in enumerate(MALFORMED, start=10):
            send({"jsonrpc": "2.0", "id": number, "method": method, "params": params})
            answer = reply(number)
            assert words in answer["error"]["message"], answer  # type: ignore[index]
        send(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {
                        "uri": "file:///t.py",
                        "languageId": "python",
                        "version": 1,
                        "text": "z = 3\n",
                    }
                },
            }
        )
        send(
            {
                "jsonrpc": "2.0",
                "id": 99,
                "method": "workspace/executeCommand",
                "params": {
                    "command": "mmx.explain",
                    "arguments": [{"uri": "file:///t.py", "position": {"line": 0, "character": 5}}],
                },
            }
        )
        assert reply(99)["result"]["tier"] == "cheap"  # type: ignore[index]
        assert server.poll() is None
    finally:
        server.kill()
        server.wait()


def test_stdin_from_a_file_is_served_too(tmp_path: Path) -> None:
    """Not a pipe (the way editors start a server), but a file: read the thread-backed way."""
    script = tmp_path / "session.lsp"
    script.write_bytes(
        _frame(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"processId": None, "rootUri": None, "capabilities": {}},
            }
        )
        + _frame({"jsonrpc": "2.0", "id": 2, "method": "shutdown"})
        + _frame({"jsonrpc": "2.0", "method": "exit"})
    )
    with script.open("rb") as stdin:
        done = subprocess.run(
            [sys.executable, "-m", "mmx_lsp"],
            env=isolated_env(tmp_path),
            stdin=stdin,
            capture_output=True,
            timeout=60,
        )
    replies = _Reader(io.BytesIO(done.stdout).read)
    first = replies.message()
    assert first["id"] == 1 and first["result"]["serverInfo"]["name"] == "mmx-lsp"  # type: ignore[index]


def test_the_status_of_ghost_text_follows_its_reply(tmp_path: Path) -> None:
    """mmx/status of an inline completion goes out after the completion itself (the editor
    draws the ghost text first): the ordering transport.after_reply relies on in pygls."""
    server = spawn_stdio(tmp_path)
    assert server.stdin and server.stdout
    reader = _Reader(server.stdout.read1)  # type: ignore[attr-defined]

    def send(payload: dict[str, object]) -> None:
        assert server.stdin
        server.stdin.write(_frame(payload))
        server.stdin.flush()

    try:
        send(
            {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "initialize",
                "params": {"processId": None, "rootUri": None, "capabilities": {}},
            }
        )
        while reader.message().get("id") != 1:
            pass
        send({"jsonrpc": "2.0", "method": "initialized", "params": {}})
        send(
            {
                "jsonrpc": "2.0",
                "method": "textDocument/didOpen",
                "params": {
                    "textDocument": {
                        "uri": "file:///t.py",
                        "languageId": "python",
                        "version": 1,
                        "text": "def add(a, b):\n    return \n",
                    }
                },
            }
        )
        order: list[str] = []
        for number in (10, 11):
            send(
                {
                    "jsonrpc": "2.0",
                    "id": number,
                    "method": "textDocument/inlineCompletion",
                    "params": {
                        "textDocument": {"uri": "file:///t.py"},
                        "position": {"line": 1, "character": 11},
                        "context": {"triggerKind": 1},
                    },
                }
            )
            while len(order) < 2 * (number - 9):
                message = reader.message()
                if message.get("id") == number and "method" not in message:
                    order.append(f"reply {number}")
                elif message.get("method") == "mmx/status":
                    order.append("status")
        assert order == ["reply 10", "status", "reply 11", "status"]
    finally:
        server.kill()
        server.wait()
