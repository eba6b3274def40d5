"""Everything mmx-lsp relies on in pygls beyond its public API, in one place.

pygls is pinned to the minor version these were tested with (pyproject.toml); CI also runs
the server's tests against the newest pygls 2.x and reports when one of these breaks.
What this module relies on:

1. `LanguageServerProtocol` subclassing (`protocol_cls=`): `MmxProtocol` overrides
   - `structure_message` (raises `JsonRpcException` for params that do not decode), and
   - the built-in `textDocument/didOpen|didChange|didClose` handlers, re-declared with
     `lsp_method` so that pygls' text workspace is not updated; they yield
     `(handler, args, None)` from `self.fm.features` the way pygls' own handlers do;
   - and reads `self._server` (the server that owns the protocol).
2. The private `LanguageServerProtocol._send_response(msg_id, error=...)` and `_send_data`,
   to answer a request whose params do not decode and a body that is not JSON.
3. `pygls.io_.run_async(stop_event=, reader=, protocol=, logger=, error_handler=)` and
   `StdoutWriter`, with a reader that has `readline` and `readexactly`, to read stdin on the
   event loop; and the private `LanguageServer._stop_event`, which `start_io` sets and
   `shutdown` reads, set here the same way.
4. The `error_handler(error, source)` convention: `source` is `JsonRpcException` for an
   unreadable message and `FeatureRequestError` for a handler that raised (its reply already
   carries the error).
5. Logger names `pygls.io_` and `pygls.protocol.json_rpc` and the first words of what they
   log for an unreadable message (`_READ_ERRORS`), to log one line instead of a traceback.
6. Bookkeeping pygls never prunes (upstream in pygls 2.1; worked around here):
   - `JsonRPCProtocol._request_futures`: `_handle_notification` and `_run_generator` store
     the future of every notification and every yielded handler under a fresh uuid and
     never remove it (only a request's own future is popped when its reply is sent), so
     every `didChange` left two futures behind. `MmxProtocol._execute_handler` drops an
     entry once its future is done.
   - `WorkDoneProgress.tokens`: one future per progress token, kept after `end`;
     `forget_progress_token` drops it.
   - In-flight request tasks are found in `_request_futures` (`interrupt_requests`) so that
     shutdown can cancel them and let each record its row before the records are flushed.
7. Ordering: a handler's reply is written by a callback scheduled with `loop.call_soon` when
   the handler returns, so a callback that schedules another (`after_reply`) runs after the
   reply is written (tests/e2e/test_transport.py checks `mmx/status` follows its reply).
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import sys
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lsprotocol import types
from pygls.exceptions import FeatureRequestError, JsonRpcException, JsonRpcInvalidParams
from pygls.io_ import StdoutWriter, run_async
from pygls.protocol import LanguageServerProtocol, lsp_method
from pygls.protocol.json_rpc import JsonRPCNotification

from mmx_lsp.errors import InvalidParams, MmxError

if TYPE_CHECKING:
    from pygls.lsp.server import LanguageServer

log = logging.getLogger("mmx_lsp")

# Longest header line read from stdin; a longer one is garbage and skipped.
HEADER_LINE_LIMIT = 1 << 16


class MmxProtocol(LanguageServerProtocol):
    """Document sync goes to mmx's own store (lines + trees), not pygls' text workspace.

    pygls' workspace re-splits the whole text on every change; the keystroke path here must
    not grow with the size of the file.
    """

    def structure_message(self, data: dict[str, Any]) -> Any:
        """A request whose params do not decode gets an error reply naming the method.

        pygls raises without answering, which leaves the editor waiting for a reply that
        never comes; answer it here and hand pygls a notification it ignores.
        """
        try:
            return super().structure_message(data)
        except JsonRpcException as exc:
            if "id" not in data or "method" not in data:
                raise
            cause = _describe_decode_error(exc)
            log.warning("malformed %s request: %s", data["method"], cause)
            self._send_response(
                data["id"],
                error=types.ResponseError(
                    code=exc.code, message=f"{data['method']}: malformed params ({cause})"
                ),
            )
            return JsonRPCNotification(method="$/mmx/ignored", jsonrpc="2.0", params=None)

    def _execute_handler(self, msg_id: Any, *args: Any, **kwargs: Any) -> None:
        """pygls' own, then forget the handler's future once it is done (see 6 above)."""
        super()._execute_handler(msg_id, *args, **kwargs)
        future = self._request_futures.get(msg_id)
        if future is None:
            return
        table = self._request_futures

        def forget(done: Any) -> None:
            if table.get(msg_id) is done:
                del table[msg_id]

        future.add_done_callback(forget)

    def send_parse_error(self, detail: str) -> None:
        """JSON-RPC's reply to a body that is not JSON: -32700 with a null id (the request's
        id cannot be read). pygls' response type drops a null id, so the message is built
        here."""
        error = {"code": -32700, "message": f"Parse error: {detail}"}
        self._send_data({"jsonrpc": "2.0", "id": None, "error": error})

    @lsp_method(types.TEXT_DOCUMENT_DID_OPEN)
    def lsp_text_document__did_open(self, params: types.DidOpenTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_OPEN)) is not None:
            yield handler, (params,), None
        warm_up = getattr(self._server, "warm_up", None)
        if callable(warm_up):
            warm_up()

    @lsp_method(types.TEXT_DOCUMENT_DID_CHANGE)
    def lsp_text_document__did_change(self, params: types.DidChangeTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CHANGE)) is not None:
            yield handler, (params,), None

    @lsp_method(types.TEXT_DOCUMENT_DID_CLOSE)
    def lsp_text_document__did_close(self, params: types.DidCloseTextDocumentParams) -> Any:
        if (handler := self.fm.features.get(types.TEXT_DOCUMENT_DID_CLOSE)) is not None:
            yield handler, (params,), None


def _describe_decode_error(exc: Exception) -> str:
    """`$.params.position: expected an object` rather than cattrs' nested exception groups."""
    cause = exc.__cause__ or exc
    try:
        from cattrs import transform_error

        details = transform_error(cause)  # type: ignore[arg-type]
    except Exception:  # not a cattrs error: its first line is the best we have
        details = [str(cause).splitlines()[0]]
    return "; ".join(details)[:300]


# What pygls logs, with a traceback, for every unreadable message (by logger).
_READ_ERRORS = {
    "pygls.io_": "Unable to handle message",
    "pygls.protocol.json_rpc": "Unable to deserialize message",
}


class _OneLineReadErrors(logging.Filter):
    """Drops the traceback pygls logs for every unreadable message; one line saying what was
    wrong is logged instead (`MmxServer.report_server_error`, `MmxProtocol.structure_message`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        # One logs the traceback as exc_info, the other formats it into the message.
        prefix = _READ_ERRORS.get(record.name)
        return prefix is None or not str(record.msg).startswith(prefix)


def _quiet_read_errors() -> None:
    for name in _READ_ERRORS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, _OneLineReadErrors) for f in logger.filters):
            logger.addFilter(_OneLineReadErrors())


class _TolerantReader:
    """A stdin StreamReader whose over-long lines (garbage on the wire) are skipped, as
    pygls' thread-backed reader skips them, instead of ending the read loop."""

    def __init__(self, reader: asyncio.StreamReader) -> None:
        self._reader = reader

    async def readline(self) -> bytes:
        try:
            return await self._reader.readline()
        except ValueError:  # longer than the limit: StreamReader dropped it
            log.warning("skipped a line of more than %d bytes on stdin", HEADER_LINE_LIMIT)
            return b"(skipped)\r\n"

    async def readexactly(self, n: int) -> bytes:
        return await self._reader.readexactly(n)


def serve_stdio(server: LanguageServer) -> None:
    """Serve over stdin/stdout, reading stdin on the event loop itself.

    pygls' own stdio reader hands every header line and body to a worker thread; on a
    pipe (how editors start a server) reading on the loop saves those thread hops on
    every message. Stdin that the loop cannot watch (a regular file, or any stdin on
    Windows) is read the pygls way.
    """
    try:
        mode = os.fstat(sys.stdin.fileno()).st_mode
    except (OSError, ValueError):
        mode = 0
    watchable = stat.S_ISFIFO(mode) or stat.S_ISSOCK(mode) or stat.S_ISCHR(mode)
    _quiet_read_errors()
    if os.name != "posix" or not watchable:  # Windows' loop cannot watch a stdin pipe
        server.start_io()
        return
    stop_event = server._stop_event = threading.Event()
    server.protocol.set_writer(StdoutWriter(sys.stdout.buffer))

    async def serve() -> None:
        reader = asyncio.StreamReader(limit=HEADER_LINE_LIMIT)
        await asyncio.get_running_loop().connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer
        )
        await run_async(
            stop_event=stop_event,
            reader=_TolerantReader(reader),
            protocol=server.protocol,
            logger=logging.getLogger("pygls.io_"),
            error_handler=server.report_server_error,
        )

    try:
        asyncio.run(serve())
    except BrokenPipeError:
        log.error("the editor closed the connection; stopping")
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        server.shutdown()


def after_reply(callback: Callable[[], None]) -> None:
    """Run `callback` just after the reply of the handler now running is written."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        callback()
        return
    # The reply is written by a callback scheduled when the handler returns; a callback
    # that schedules another runs after it.
    loop.call_soon(lambda: loop.call_soon(callback))


def is_unreadable_message(source: Any) -> bool:
    """Whether pygls' error handler was called for a message it could not read."""
    return source is JsonRpcException


def is_failed_request(source: Any) -> bool:
    """Whether pygls' error handler was called for a handler that raised (already answered
    with an error reply)."""
    return source is FeatureRequestError


def send_parse_error(server: LanguageServer, detail: str) -> None:
    protocol = server.protocol
    if isinstance(protocol, MmxProtocol):
        protocol.send_parse_error(detail)


def lsp_error(exc: MmxError) -> JsonRpcException:
    """The LSP error reply for an mmx error raised by a handler: the one mapping."""
    if isinstance(exc, InvalidParams):
        return JsonRpcInvalidParams(str(exc))
    return JsonRpcException(str(exc))  # -32603, an internal error: answering it failed


async def interrupt_requests(server: LanguageServer, wait_s: float = 2.0) -> int:
    """Cancel every request still being answered (but the one running this) and wait up to
    `wait_s` for them to end, so each records what happened; how many there were."""
    current = asyncio.current_task()
    running: list[asyncio.Task[Any]] = []
    for future in list(server.protocol._request_futures.values()):
        if isinstance(future, asyncio.Task) and future is not current and not future.done():
            running.append(future)
    for task in running:
        task.cancel()
    if running:
        await asyncio.wait(running, timeout=wait_s)
    return len(running)


def forget_progress_token(server: LanguageServer, token: str) -> None:
    """Drop the future pygls keeps for a work-done progress token that has ended."""
    tokens = getattr(server.work_done_progress, "tokens", None)
    if isinstance(tokens, dict):
        tokens.pop(token, None)
