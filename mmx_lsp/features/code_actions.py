"""Assistant code actions, listed with tier, model and estimated cost (no model call)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lsprotocol import types

from mmx_lsp.features import shared
from mmx_lsp.kinds import Kind, is_action_kind
from mmx_lsp.server import MmxServer  # a runtime import: pygls reads the handlers' hints

if TYPE_CHECKING:
    from mmx_lsp.documents import Document
    from mmx_lsp.server import MmxServer

log = logging.getLogger("mmx_lsp")

REWRITE = "refactor.rewrite.mmx"
QUICKFIX = "quickfix.mmx"
EXPLAIN = "refactor.mmx.explain"
DOCSTRING = "refactor.mmx.docstring"
TIER = "source.mmx.tier"
KINDS = [REWRITE, QUICKFIX, EXPLAIN, DOCSTRING, TIER]

# (code action kind, request kind, title label)
ASSISTANT_ACTIONS: tuple[tuple[str, Kind, str], ...] = (
    (REWRITE, "refactor", "Refactor selection"),
    (DOCSTRING, "docstring", "Write docstring"),
    (EXPLAIN, "explain", "Explain selection"),
)


def _wanted(kind: str, only: Sequence[str] | None) -> bool:
    if not only:
        return True
    return any(kind == o or kind.startswith(o + ".") for o in only)


def _target(doc: Document, rng: types.Range) -> types.Range:
    """The selection, or the definition around the cursor when nothing is selected."""
    start, end = rng.start, rng.end
    if (end.line, end.character) < (start.line, start.character):
        start, end = end, start
    if (start.line, start.character) != (end.line, end.character):
        return types.Range(start, end)
    row, _ = doc.clamp(start.line, start.character)
    tree = doc.edited_tree()
    first, last = row, row
    if tree is not None and doc.spec is not None:
        node = tree.root_node.named_descendant_for_point_range((row, 0), (row, 0))
        while node is not None and node.type not in doc.spec.definitions:
            node = node.parent
        if node is not None:
            first, last = node.start_point.row, min(node.end_point.row, doc.line_count - 1)
    end_row = min(last + 1, doc.line_count - 1)
    end_char = 0 if end_row > last else len(doc.line_text(last))
    return types.Range(types.Position(first, 0), types.Position(end_row, end_char))


def tier_actions(ls: MmxServer, uri: str) -> list[types.CodeAction]:
    def action(title: str, tier: str, scope: str) -> types.CodeAction:
        args: dict[str, Any] = {"tier": tier, "scope": scope}
        if scope == "document":
            args["uri"] = uri
        return types.CodeAction(
            title=title,
            kind=TIER,
            command=types.Command(title=title, command="mmx.setTier", arguments=[args]),
        )

    actions = [
        action("mmx: use premium for the next request", "premium", "next"),
        action("mmx: use premium for this file", "premium", "document"),
        action("mmx: use cheap for this file", "cheap", "document"),
    ]
    if ls.overrides.lookup(uri) is not None:
        actions.append(action("mmx: back to auto", "auto", "session"))
    return actions


def register(server: MmxServer) -> None:
    @server.feature(
        types.TEXT_DOCUMENT_CODE_ACTION,
        types.CodeActionOptions(resolve_provider=True, code_action_kinds=KINDS),
    )
    def code_action(ls: MmxServer, params: types.CodeActionParams) -> list[types.CodeAction]:
        uri = params.text_document.uri
        doc = shared.document(ls, uri)
        if doc is None:
            return []
        only = params.context.only
        actions: list[types.CodeAction] = []
        if not shared.excluded(ls, doc):
            target = _target(doc, params.range)
            wanted = [entry for entry in ASSISTANT_ACTIONS if _wanted(entry[0], only)]
            if wanted:
                decisions = shared.decide_kinds(
                    ls,
                    doc,
                    [request_kind for _, request_kind, _ in wanted],
                    target.start,
                    target.end,
                )
                for kind, request_kind, label in wanted:
                    actions.append(
                        _assistant(label, kind, request_kind, uri, target, decisions[request_kind])
                    )
            if _wanted(QUICKFIX, only):
                for diagnostic in params.context.diagnostics[:5]:
                    decision = shared.decide(
                        ls, doc, "fix", diagnostic.range.start, diagnostic.range.end
                    )
                    message = diagnostic.message.splitlines()[0][:60] if diagnostic.message else ""
                    action = _assistant(
                        f"Fix “{message}”", QUICKFIX, "fix", uri, diagnostic.range, decision
                    )
                    action.diagnostics = [diagnostic]
                    actions.append(action)
        if _wanted(TIER, only):
            actions.extend(tier_actions(ls, uri))
        return actions

    @server.feature(types.CODE_ACTION_RESOLVE)
    async def resolve(ls: MmxServer, action: types.CodeAction) -> types.CodeAction:
        data = action.data if isinstance(action.data, dict) else None
        if not data or "uri" not in data:
            return action
        doc = shared.document(ls, data["uri"])
        if doc is None:
            return action
        request_kind = data.get("kind")
        rng = _range(data.get("range"))
        if not is_action_kind(request_kind) or rng is None:
            log.info("%s: not an assistant action this server can resolve", action.title)
            return action
        if shared.excluded(ls, doc):
            return action
        diagnostics = [d.message for d in action.diagnostics or [] if d.message]
        progress = ls.pipeline.reporter.progress(action.title)
        await progress.begin(f"asking {data.get('tier', 'the model')}")
        try:
            answer = await ls.pipeline.run(
                request_kind, doc, rng.start, rng.end, diagnostics=diagnostics, progress=progress
            )
        finally:
            progress.end("stopped")  # a no-op once the status has ended it
        if not answer.text:
            return action
        if request_kind == "explain":
            ls.pipeline.reporter.explanation(answer.request_id, doc.uri, rng, answer.text)
            return action
        action.edit = types.WorkspaceEdit(
            changes={doc.uri: [types.TextEdit(range=rng, new_text=answer.text)]}
        )
        return action


def _range(value: Any) -> types.Range | None:
    """The action's range from its data (as `_assistant` wrote it), or None when unusable."""
    try:
        start, end = value["start"], value["end"]
        return types.Range(
            types.Position(int(start["line"]), int(start["character"])),
            types.Position(int(end["line"]), int(end["character"])),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _assistant(
    label: str, kind: str, request_kind: str, uri: str, rng: types.Range, decision: Any
) -> types.CodeAction:
    from mmx_lsp.routing import action_title

    return types.CodeAction(
        title=action_title(label, decision),
        kind=kind,
        data={
            "uri": uri,
            "kind": request_kind,
            "range": {
                "start": {"line": rng.start.line, "character": rng.start.character},
                "end": {"line": rng.end.line, "character": rng.end.character},
            },
            "tier": decision.tier,
        },
    )
