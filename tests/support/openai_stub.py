"""A small OpenAI-compatible HTTP server on loopback, with fault modes, for tests.

Two ways to use it:

* as a script: ``python tests/support/openai_stub.py --port 0 [--reply TEXT]`` prints its base
  URL (``http://127.0.0.1:PORT/v1``) as the first line of stdout and serves until killed;
  without ``--reply`` the reply comes from ``$MMX_STUB_REPLY``, else a short code line;
* imported: ``with StubServer(reply="x = 1") as stub: ...`` then point a client at
  ``stub.base_url`` and assert on ``stub.requests`` (the JSON bodies received).

Endpoints: ``GET /v1/models``, ``POST /v1/chat/completions``, ``POST /v1/completions``
(``suffix`` accepted), each non-streaming or streaming (SSE, chunked transfer encoding, a
final usage chunk when ``stream_options.include_usage`` is set).

Behaviour is plain attributes, changeable from a test at any time:

* ``reply`` / ``reply_by_model`` — the answer text (per model id wins over ``reply``);
* ``mode`` — ``"ok"``, ``"500"``, ``"429"`` (with ``Retry-After: retry_after``), ``"401"``
  (echoes the refused key in its message, as OpenAI does), ``"slow"``
  (waits ``delay_s`` before answering), ``"garbage"`` (a body that is not JSON),
  ``"bad_sse"`` (a stream whose second event is cut-off JSON),
  ``"disconnect"`` (closes the connection in the middle of the body);
* ``queue_modes("429", "ok")`` — modes used by the next requests, one each, before ``mode``;
* ``cached_tokens`` — reported as ``usage.prompt_tokens_details.cached_tokens``;
* ``usage_cost`` — OpenRouter-style ``usage.cost``; ``litellm_cost`` — LiteLLM-style
  ``x-litellm-response-cost`` header;
* ``chunk_delay_s`` — pause between streamed chunks (to cancel a stream in the middle);
* ``reported_model`` — the model id put in replies (default: the requested one);
* ``fim`` — how ``/v1/completions`` treats a ``suffix``: ``"ok"`` (accepted), ``"reject"``
  (HTTP 400, as an endpoint without fill-in-the-middle does), ``"swap"`` (accepted, and
  ``echo: true`` shows the suffix before the prefix, as a server that puts it there would);
* ``finish_reason`` — the one every answer ends with: ``"stop"``, or ``"length"`` (the
  answer was cut at ``max_tokens``).

``disconnects`` counts streams the client closed before the end; ``wait_for_disconnect()``
blocks until one happened. ``completed`` lists the calls answered in full (the whole body, or
every event of a stream through ``[DONE]``), each as ``{"model", "prompt_tokens",
"completion_tokens", "body"}``: what a provider would bill, for tests that check the bill.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import os
import re
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

DEFAULT_REPLY = "return a + b"
MODES = ("ok", "500", "429", "401", "slow", "garbage", "bad_sse", "disconnect")
FIM_MODES = ("ok", "reject", "swap")
KNOWN_MODELS = ("stub-cheap", "stub-premium", "stub-model")


def estimate_tokens(text: str) -> int:
    """About four characters a token, at least one."""
    return max(1, math.ceil(len(text) / 4))


def _prompt_text(body: dict[str, Any]) -> str:
    if isinstance(body.get("messages"), list):
        parts = []
        for message in body["messages"]:
            content = message.get("content") if isinstance(message, dict) else None
            if isinstance(content, str):
                parts.append(content)
            elif isinstance(content, list):
                parts.extend(str(p.get("text", "")) for p in content if isinstance(p, dict))
        return "\n".join(parts)
    prompt = body.get("prompt", "")
    text = prompt if isinstance(prompt, str) else "".join(str(p) for p in prompt)
    suffix = body.get("suffix")
    return text + (suffix if isinstance(suffix, str) else "")


def _pieces(text: str) -> list[str]:
    """The reply cut into stream deltas: words with their trailing whitespace."""
    return re.findall(r"\s*\S+\s*", text) or [text]


class _ClientGone(Exception):
    """The client closed the connection while we were writing."""


class StubServer:
    """The stub, started on construction; use as a context manager or call ``close()``."""

    def __init__(
        self,
        *,
        reply: str | None = None,
        reply_by_model: dict[str, str] | None = None,
        mode: str = "ok",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.reply: str | None = reply
        self.reply_by_model: dict[str, str] = dict(reply_by_model or {})
        self.mode: str = mode
        self.retry_after: float = 1.0
        self.delay_s: float = 2.0
        self.chunk_delay_s: float = 0.0
        # A function of the request body that writes the answer (a model that knows what
        # the user will type, for benchmarks); it takes precedence over `reply`.
        self.reply_fn: Callable[[dict[str, Any]], str] | None = None
        self.cached_tokens: int | None = None
        self.usage_cost: float | str | None = None
        self.litellm_cost: str | None = None
        self.reported_model: str | None = None
        self.fim: str = "ok"
        self.finish_reason: str = "stop"
        self.requests: list[dict[str, Any]] = []
        self.request_headers: list[dict[str, str]] = []
        self.disconnects = 0
        self.completed: list[dict[str, Any]] = []
        self._modes: collections.deque[str] = collections.deque()
        self._lock = threading.Lock()
        self._disconnected = threading.Event()
        self._stopping = threading.Event()
        self._host = "127.0.0.1" if host in ("", "0.0.0.0") else host
        self._httpd = ThreadingHTTPServer((host, port), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="openai-stub", daemon=True
        )
        self._thread.start()

    # ------------------------------------------------------------------ public helpers

    @property
    def port(self) -> int:
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    def queue_modes(self, *modes: str) -> None:
        """Modes for the next requests, one each, before falling back to ``mode``."""
        for mode in modes:
            if mode not in MODES:
                raise ValueError(f"unknown mode {mode!r}; known: {', '.join(MODES)}")
        with self._lock:
            self._modes.extend(modes)

    def wait_for_disconnect(self, timeout: float = 2.0) -> bool:
        """True once a client has closed a stream before its end."""
        return self._disconnected.wait(timeout)

    def reset(self) -> None:
        """Forget received requests and queued modes; behaviour back to defaults."""
        with self._lock:
            self._modes.clear()
            self.requests.clear()
            self.request_headers.clear()
            self.completed.clear()
            self.disconnects = 0
            self._disconnected.clear()
        self.reply = None
        self.reply_by_model = {}
        self.reply_fn = None
        self.mode = "ok"
        self.retry_after = 1.0
        self.delay_s = 2.0
        self.cached_tokens = None
        self.usage_cost = None
        self.litellm_cost = None
        self.reported_model = None
        self.fim = "ok"
        self.chunk_delay_s = 0.0
        self.finish_reason = "stop"

    def close(self) -> None:
        self._stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> StubServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ internals

    def _next_mode(self) -> str:
        with self._lock:
            return self._modes.popleft() if self._modes else self.mode

    def _record(self, body: dict[str, Any], headers: dict[str, str]) -> None:
        with self._lock:
            self.requests.append(body)
            self.request_headers.append(headers)

    def _note_completed(self, body: dict[str, Any], model: str, text: str) -> None:
        usage = self._usage(body, text)
        with self._lock:
            self.completed.append(
                {
                    "model": model,
                    "prompt_tokens": usage["prompt_tokens"],
                    "completion_tokens": usage["completion_tokens"],
                    "body": body,
                }
            )

    def _note_disconnect(self) -> None:
        with self._lock:
            self.disconnects += 1
        self._disconnected.set()

    def _reply_for(self, model: str, body: dict[str, Any] | None = None) -> str:
        if self.reply_fn is not None and body is not None:
            return self.reply_fn(body)
        if model in self.reply_by_model:
            return self.reply_by_model[model]
        return self.reply if self.reply is not None else DEFAULT_REPLY

    def _usage(self, body: dict[str, Any], text: str) -> dict[str, Any]:
        prompt_tokens = estimate_tokens(_prompt_text(body))
        usage: dict[str, Any] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": estimate_tokens(text),
            "total_tokens": prompt_tokens + estimate_tokens(text),
        }
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {
                "cached_tokens": min(self.cached_tokens, prompt_tokens)
            }
        if self.usage_cost is not None:
            usage["cost"] = self.usage_cost
        return usage

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(_Handler):
            server_stub = stub

        return Handler


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: without this, Nagle's algorithm and the
    # client's delayed ACK add about 40 ms to every reply on a kept-alive connection.
    disable_nagle_algorithm = True
    server_stub: StubServer

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests read ``requests`` instead."""

    # ------------------------------------------------------------------ plumbing

    def _send_json(
        self, status: int, payload: Any, extra_headers: dict[str, str] | None = None
    ) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (extra_headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def _write_chunk(self, data: bytes) -> None:
        try:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError) as exc:
            raise _ClientGone from exc

    def _cost_headers(self) -> dict[str, str]:
        stub = self.server_stub
        return {"x-litellm-response-cost": stub.litellm_cost} if stub.litellm_cost else {}

    def _drop_connection(self) -> None:
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    # ------------------------------------------------------------------ endpoints

    def do_GET(self) -> None:
        if self.path.rstrip("/") != "/v1/models":
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "nf"}})
            return
        stub = self.server_stub
        names = list(dict.fromkeys([*KNOWN_MODELS, *stub.reply_by_model]))
        data = [{"id": n, "object": "model", "created": 0, "owned_by": "stub"} for n in names]
        self._send_json(200, {"object": "list", "data": data})

    def do_POST(self) -> None:
        path = self.path.rstrip("/")
        # The body is read first, whatever the route: left unread, it would be taken for the
        # next request on this kept-alive connection.
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if path not in ("/v1/chat/completions", "/v1/completions"):
            self._send_json(404, {"error": {"message": f"no route {self.path}", "type": "nf"}})
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            self._send_json(400, {"error": {"message": "body is not JSON", "type": "invalid"}})
            return
        stub = self.server_stub
        stub._record(body, {k.lower(): v for k, v in self.headers.items()})
        chat = path.endswith("/chat/completions")
        mode = stub._next_mode()
        stream = bool(body.get("stream"))

        if mode == "500":
            self._send_json(
                500, {"error": {"message": "stub internal error", "type": "server_error"}}
            )
            return
        if mode == "429":
            self._send_json(
                429,
                {"error": {"message": "rate limited by stub", "type": "rate_limit_exceeded"}},
                {"Retry-After": f"{stub.retry_after:g}"},
            )
            return
        if mode == "401":
            # Like OpenAI, echo the key it refused, so that tests can check it is redacted.
            key = self.headers.get("Authorization", "").removeprefix("Bearer ")
            self._send_json(
                401,
                {"error": {"message": f"Incorrect API key provided: {key}", "type": "auth"}},
            )
            return
        if mode == "slow" and stub._stopping.wait(stub.delay_s):
            return
        if mode == "garbage":
            self._garbage(stream)
            return
        if mode == "bad_sse" and stream:
            self._bad_sse(chat)
            return

        suffix = body.get("suffix") if not chat else None
        if isinstance(suffix, str) and stub.fim == "reject":
            self._send_json(
                400, {"error": {"message": "suffix is not supported", "type": "invalid"}}
            )
            return
        model = str(body.get("model", "stub-model"))
        text = stub._reply_for(model, body)
        if not chat and body.get("echo") and isinstance(body.get("prompt"), str):
            # The prompt as the server assembled it, then the answer.
            before = body["prompt"]
            if isinstance(suffix, str) and stub.fim == "swap":
                before = suffix + before
            text = before + text
        reported = stub.reported_model or model
        if stream:
            self._stream(body, chat, reported, text, disconnect=mode == "disconnect")
        elif mode == "disconnect":
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "4096")
            self.end_headers()
            self.wfile.write(b'{"id": "cut-')
            self._drop_connection()
        else:
            self._whole(body, chat, reported, text)

    def _garbage(self, stream: bool) -> None:
        if stream:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                self._write_chunk(b"data: <html>this is not json</html>\n\n")
                self._write_chunk(b"")
            except _ClientGone:
                self.close_connection = True
            return
        data = b"<html><body>502 Bad Gateway (not JSON)</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _bad_sse(self, chat: bool) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first: dict[str, Any] = (
            {"index": 0, "delta": {"role": "assistant", "content": "re"}, "finish_reason": None}
            if chat
            else {"index": 0, "text": "re", "logprobs": None, "finish_reason": None}
        )
        event = {"id": "bad", "object": "chunk", "created": 0, "model": "m", "choices": [first]}
        try:
            self._write_chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            self._write_chunk(b'data: {"id": "bad", "choices": [{"delta": {"content": "tu\n\n')
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        except _ClientGone:
            self.close_connection = True

    def _whole(self, body: dict[str, Any], chat: bool, model: str, text: str) -> None:
        usage = self.server_stub._usage(body, text)
        choice: dict[str, Any]
        if chat:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": self.server_stub.finish_reason,
            }
            kind = "chat.completion"
        else:
            finish = self.server_stub.finish_reason
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            kind = "text_completion"
        payload = {
            "id": f"stub-{len(self.server_stub.requests)}",
            "object": kind,
            "created": int(time.time()),
            "model": model,
            "choices": [choice],
            "usage": usage,
        }
        self._send_json(200, payload, self._cost_headers())
        self.server_stub._note_completed(body, model, text)

    def _events(
        self, body: dict[str, Any], chat: bool, model: str, text: str
    ) -> Iterator[dict[str, Any]]:
        ident = f"stub-{len(self.server_stub.requests)}"
        created = int(time.time())
        kind = "chat.completion.chunk" if chat else "text_completion"

        def event(choices: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
            return {
                "id": ident,
                "object": kind,
                "created": created,
                "model": model,
                "choices": choices,
                **extra,
            }

        for number, piece in enumerate(_pieces(text)):
            if chat:
                delta: dict[str, Any] = {"content": piece}
                if number == 0:
                    delta["role"] = "assistant"
                yield event([{"index": 0, "delta": delta, "finish_reason": None}])
            else:
                yield event([{"index": 0, "text": piece, "logprobs": None, "finish_reason": None}])
        finish = self.server_stub.finish_reason
        if chat:
            yield event([{"index": 0, "delta": {}, "finish_reason": finish}])
        else:
            yield event([{"index": 0, "text": "", "logprobs": None, "finish_reason": finish}])
        options = body.get("stream_options") or {}
        if isinstance(options, dict) and options.get("include_usage"):
            yield event([], usage=self.server_stub._usage(body, text))

    def _stream(
        self, body: dict[str, Any], chat: bool, model: str, text: str, *, disconnect: bool
    ) -> None:
        stub = self.server_stub
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in self._cost_headers().items():
            self.send_header(name, value)
        self.end_headers()
        try:
            for number, event in enumerate(self._events(body, chat, model, text)):
                if disconnect and number == 1:
                    self._drop_connection()
                    return
                if number and stub.chunk_delay_s and stub._stopping.wait(stub.chunk_delay_s):
                    return
                self._write_chunk(b"data: " + json.dumps(event).encode() + b"\n\n")
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        except _ClientGone:
            self.close_connection = True
            stub._note_disconnect()
            return
        stub._note_completed(body, model, text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="OpenAI-compatible stub server for tests.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--reply", default=None, help="reply text (default: $MMX_STUB_REPLY)")
    parser.add_argument("--mode", default="ok", choices=MODES)
    parser.add_argument("--cached-tokens", type=int, default=None)
    parser.add_argument("--usage-cost", default=None, help="OpenRouter-style usage.cost")
    parser.add_argument("--litellm-cost", default=None, help="x-litellm-response-cost header")
    parser.add_argument("--delay", type=float, default=2.0, help="seconds, for --mode slow")
    parser.add_argument("--fim", default="ok", choices=FIM_MODES, help="how a suffix is taken")
    args = parser.parse_args(argv)
    reply = args.reply if args.reply is not None else os.environ.get("MMX_STUB_REPLY")
    stub = StubServer(reply=reply, mode=args.mode, host=args.host, port=args.port)
    stub.cached_tokens = args.cached_tokens
    stub.usage_cost = float(args.usage_cost) if args.usage_cost is not None else None
    stub.litellm_cost = args.litellm_cost
    stub.delay_s = args.delay
    stub.fim = args.fim
    print(stub.base_url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        stub.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
