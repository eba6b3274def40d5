"""Inline completion (LSP 3.18) and the textDocument/completion fallback."""

from __future__ import annotations

import logging
import re

from lsprotocol import types

from mmx_lsp.features import shared
from mmx_lsp.server import MmxServer  # a runtime import: pygls reads the handlers' hints

log = logging.getLogger("mmx_lsp")

ACCEPTED = "mmx.accepted"
# The word before the cursor: completion clients filter items by it.
_WORD_BEFORE = re.compile(r"[A-Za-z0-9_$]*$")
LABEL_CHARS = 60


def _accepted(request_id: str) -> types.Command:
    return types.Command(
        title="mmx: accepted", command=ACCEPTED, arguments=[{"request_id": request_id}]
    )


def register(server: MmxServer) -> None:
    @server.feature(types.TEXT_DOCUMENT_INLINE_COMPLETION, types.InlineCompletionOptions())
    async def inline_completion(
        ls: MmxServer, params: types.InlineCompletionParams
    ) -> types.InlineCompletionList:
        position = params.position
        doc = shared.document(ls, params.text_document.uri)
        if doc is None:
            return types.InlineCompletionList(items=[])
        automatic = params.context.trigger_kind == types.InlineCompletionTriggerKind.Automatic
        answer = await ls.pipeline.run("inline", doc, position, typing=automatic)
        if not answer.text:
            return types.InlineCompletionList(items=[])
        item = types.InlineCompletionItem(
            insert_text=answer.text,
            range=types.Range(position, position),
            command=_accepted(answer.request_id),
        )
        return types.InlineCompletionList(items=[item])

    @server.feature(types.TEXT_DOCUMENT_COMPLETION, types.CompletionOptions(trigger_characters=[]))
    async def completion(ls: MmxServer, params: types.CompletionParams) -> types.CompletionList:
        position = params.position
        doc = shared.document(ls, params.text_document.uri)
        if doc is None:
            return types.CompletionList(is_incomplete=True, items=[])
        invoked = params.context is not None and (
            params.context.trigger_kind == types.CompletionTriggerKind.Invoked
        )
        answer = await ls.pipeline.run("completion", doc, position, typing=not invoked)
        if not answer.text:
            return types.CompletionList(is_incomplete=True, items=[])
        # The item replaces the word before the cursor with that word plus the suggestion, so
        # that the client's filtering (by the typed word) keeps it.
        row, index = doc.clamp(position.line, position.character)
        line = doc.line_text(row)
        word = _WORD_BEFORE.search(line[:index])
        typed = word.group() if word else ""
        start_line, start_char = doc.to_lsp(row, index - len(typed))
        new_text = typed + answer.text
        first_line = new_text.split("\n", 1)[0].strip() or new_text.strip()
        label = (
            first_line if len(first_line) <= LABEL_CHARS else first_line[: LABEL_CHARS - 1] + "…"
        )
        status = answer.status
        detail = f"mmx · {status.tier} · {status.model}" if status is not None else "mmx"
        item = types.CompletionItem(
            label=label,
            kind=types.CompletionItemKind.Snippet,
            detail=detail,
            documentation=types.MarkupContent(
                kind=types.MarkupKind.Markdown, value=f"```\n{new_text}\n```"
            ),
            filter_text=new_text,
            sort_text="0",
            preselect=True,
            insert_text_format=types.InsertTextFormat.PlainText,
            text_edit=types.TextEdit(
                range=types.Range(types.Position(start_line, start_char), position),
                new_text=new_text,
            ),
            command=_accepted(answer.request_id),
        )
        return types.CompletionList(is_incomplete=True, items=[item])
