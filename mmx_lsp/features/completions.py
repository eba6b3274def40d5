"""Inline completion (LSP 3.18) and the textDocument/completion fallback."""

from __future__ import annotations

import logging

from lsprotocol import types

from mmx_lsp.features import shared
from mmx_lsp.server import MmxServer  # a runtime import: pygls reads the handlers' hints

log = logging.getLogger("mmx_lsp")


def register(server: MmxServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: MmxServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList | None:
        return await suggest(ls, params.text_document.uri, params.position, "inline")

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[]))
    async def completion(ls: MmxServer, params: types.CompletionParams) -> types.CompletionList:
        await suggest(ls, params.text_document.uri, params.position, "completion")
        return types.CompletionList(is_incomplete=True, items=[])


async def suggest(
    ls: MmxServer, uri: str, position: types.Position, kind: str
) -> types.InlineCompletionList | None:
    doc = shared.document(ls, uri)
    if doc is None or shared.excluded(ls, doc):
        return types.InlineCompletionList(items=[])
    decision = shared.decide(ls, doc, kind, position)
    log.info(
        "%s routed to %s (%s): %s — no model call made yet",
        kind,
        decision.tier,
        decision.model,
        decision.reason,
    )
    return types.InlineCompletionList(items=[])
