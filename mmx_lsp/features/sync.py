"""didOpen / didChange / didClose into mmx's document store."""

from __future__ import annotations

import logging

from lsprotocol import types

from mmx_lsp.server import MmxServer  # a runtime import: pygls reads the handlers' hints

log = logging.getLogger("mmx_lsp")


def register(server: MmxServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: MmxServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        doc = ls.documents.open(item.uri, item.language_id, item.version, item.text)
        if doc.spec is None:
            why = (
                "binary content"
                if doc.binary
                else ("too large to parse" if doc.size_bytes > 4 * 1024 * 1024 else "no grammar")
            )
            log.info("%s (%s): %s, scored by size only", item.uri, item.language_id, why)

    @server.feature(types.TEXT_DOCUMENT_DID_CHANGE)
    def did_change(ls: MmxServer, params: types.DidChangeTextDocumentParams) -> None:
        uri = params.text_document.uri
        doc = ls.documents.get(uri)
        if doc is None:
            log.warning("didChange for %s, which is not open: ignored", uri)
            return
        version = params.text_document.version
        for change in params.content_changes:
            if isinstance(change, types.TextDocumentContentChangePartial):
                start, end = change.range.start, change.range.end
                doc.apply(
                    (start.line, start.character), (end.line, end.character), change.text, version
                )
            else:
                doc.replace_all(change.text, version)
        ls.schedule_reparse(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: MmxServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.close(params.text_document.uri)
