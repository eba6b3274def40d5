"""A language server that sends malformed `mmx/status` notifications, for the fault scenario.

Started by the extension in place of mmx-lsp (through mmx.server.path) in test/e2e/run.mjs: on
every change of a document it reports a status that breaks the contract (wrong types, missing
fields), so the test can check that the extension says so and the editor stays usable.
"""

from __future__ import annotations

from lsprotocol import types
from pygls.lsp.server import LanguageServer

server = LanguageServer("mmx-fake-malformed", "0")
BAD_STATUSES = [
    {"tier": 5, "model": None, "cost_usd": "a lot"},
    "not even an object",
    {"request_id": "r", "tier": "cheap", "model": "m"},
]
sent = 0


@server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
def did_change(ls: LanguageServer, params: types.DidChangeTextDocumentParams) -> None:
    global sent
    ls.protocol.notify("mmx/status", BAD_STATUSES[sent % len(BAD_STATUSES)])
    sent += 1


if __name__ == "__main__":
    server.start_io()
