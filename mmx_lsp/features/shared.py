"""Helpers the feature modules share: finding documents and routing a request."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from lsprotocol import types

if TYPE_CHECKING:
    from mmx_lsp.documents import Document
    from mmx_lsp.kinds import Kind
    from mmx_lsp.routing import Decision
    from mmx_lsp.scoring import Request
    from mmx_lsp.server import MmxServer

log = logging.getLogger("mmx_lsp")


def document(server: MmxServer, uri: str) -> Document | None:
    doc = server.documents.get(uri)
    if doc is None:
        log.info("request for %s, which is not open: empty answer", uri)
    return doc


def excluded(server: MmxServer, doc: Document) -> bool:
    from mmx_lsp import engine

    return engine.excluded(server.settings, doc)


def decide(
    server: MmxServer,
    doc: Document,
    kind: Kind,
    start: types.Position,
    end: types.Position | None = None,
    *,
    request_id: str | None = None,
) -> Decision:
    """Route one request (`Pipeline.decide`). Peeks at overrides; the caller consumes a "next"
    override."""
    request = _request(doc, kind, start, end)
    return server.pipeline.decide(doc, request, request_id=request_id)


def decide_kinds(
    server: MmxServer,
    doc: Document,
    kinds: list[Kind],
    start: types.Position,
    end: types.Position | None = None,
) -> dict[Kind, Decision]:
    """Route several kinds of request over one place, measuring it once (code action lists)."""
    return server.pipeline.decide_kinds(doc, _request(doc, kinds[0], start, end), kinds)


def _request(
    doc: Document, kind: Kind, start: types.Position, end: types.Position | None
) -> Request:
    from mmx_lsp import engine

    stop = None if end is None else (end.line, end.character)
    return engine.request_at(doc, kind, (start.line, start.character), stop)
