"""didOpen / didChange / didClose into mmx's document store."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

from mmx_lsp.server import MmxServer  # a runtime import: pygls reads the handlers' hints

if TYPE_CHECKING:
    from mmx_lsp.documents import Document

log = logging.getLogger("mmx_lsp")


def register(server: MmxServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_DID_OPEN)
    def did_open(ls: MmxServer, params: types.DidOpenTextDocumentParams) -> None:
        item = params.text_document
        doc = ls.documents.open(item.uri, item.language_id, item.version, item.text)
        why = doc.text_only_reason()
        if why is not None:
            log.info("%s (%s): %s, scored by size only", item.uri, item.language_id, why)
        _tell_replaced(ls, doc)

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
        _tell_replaced(ls, doc)
        ls.schedule_reparse(uri)

    @server.feature(types.TEXT_DOCUMENT_DID_CLOSE)
    def did_close(ls: MmxServer, params: types.DidCloseTextDocumentParams) -> None:
        ls.documents.close(params.text_document.uri)


def _tell_replaced(ls: MmxServer, doc: Document) -> None:
    """Say, once per document, that invalid characters were read as U+FFFD (the document is
    still tracked and served; only those characters are not what the editor holds)."""
    count = doc.replaced_chars
    if not count or doc.replaced_told:
        return
    doc.replaced_told = True
    noun = "an unpaired UTF-16 surrogate" if count == 1 else f"{count} unpaired UTF-16 surrogates"
    message = (
        f"mmx: {doc.name} has {noun} (not valid Unicode text); read as U+FFFD, so "
        "suggestions next to them may not match the file exactly"
    )
    log.warning("%s (%s)", message, doc.uri)
    ls.show(message, types.MessageType.Warning)
