"""The mmx.* commands of workspace/executeCommand."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from typing import Any

from lsprotocol import types

from mmx_lsp import transport
from mmx_lsp.errors import InvalidParams
from mmx_lsp.features import shared
from mmx_lsp.kinds import KINDS, is_kind, is_tier
from mmx_lsp.kinds import TIERS as TIER_NAMES
from mmx_lsp.metrics import MetricsError
from mmx_lsp.server import MmxServer  # a runtime import: pygls reads the handlers' hints
from mmx_lsp.since import parse_since

log = logging.getLogger("mmx_lsp")

TIERS = (*TIER_NAMES, "auto")
SCOPES = ("next", "document", "session")


def _args(args: tuple[Any, ...]) -> dict[str, Any]:
    if len(args) == 1 and isinstance(args[0], list):  # some clients nest the list
        args = tuple(args[0])
    if not args or not isinstance(args[0], dict):
        raise InvalidParams("expected one JSON object as the argument")
    return args[0]


def _position(value: Any, name: str) -> types.Position:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("line"), int)
        or not isinstance(value.get("character"), int)
    ):
        raise InvalidParams(f"{name} must be {{line: int, character: int}}")
    return types.Position(max(0, value["line"]), max(0, value["character"]))


def _fail(message: str) -> Exception:
    """The error reply of a command whose arguments cannot be used."""
    log.warning("command refused: %s", message)
    return transport.lsp_error(InvalidParams(message))


def register(server: MmxServer) -> None:
    @server.command("mmx.setTier")
    def set_tier(ls: MmxServer, *args: Any) -> dict[str, Any]:
        try:
            params = _args(args)
            tier, scope = params.get("tier"), params.get("scope", "next")
            if tier not in TIERS:
                raise InvalidParams(f"tier must be one of {', '.join(TIERS)} (got {tier!r})")
            if scope not in SCOPES:
                raise InvalidParams(f"scope must be one of {', '.join(SCOPES)} (got {scope!r})")
            uri = params.get("uri")
            if scope == "document" and not isinstance(uri, str):
                raise InvalidParams("scope 'document' needs the document's uri")
            ls.overrides.set(tier, scope, uri)
        except InvalidParams as exc:
            raise _fail(f"mmx.setTier: {exc}") from None
        log.info("tier override: %s for %s", tier, scope)
        return ls.overrides.as_dict()

    @server.command("mmx.explain")
    def explain(ls: MmxServer, *args: Any) -> dict[str, Any] | None:
        try:
            params = _args(args)
            uri = params.get("uri")
            if not isinstance(uri, str):
                raise InvalidParams("uri is required")
            if "range" in params:
                rng = params["range"]
                if not isinstance(rng, dict):
                    raise InvalidParams("range must be {start, end}")
                start = _position(rng.get("start"), "range.start")
                end: types.Position | None = _position(rng.get("end"), "range.end")
                kind = params.get("kind", "refactor")
            else:
                start = _position(params.get("position"), "position")
                end = None
                kind = params.get("kind", "inline")
            if not is_kind(kind):
                raise InvalidParams(f"kind must be one of {', '.join(KINDS)} (got {kind!r})")
        except InvalidParams as exc:
            raise _fail(f"mmx.explain: {exc}") from None
        doc = shared.document(ls, uri)
        if doc is None:
            raise _fail(f"mmx.explain: {uri} is not open")
        decided = shared.decide(ls, doc, kind, start, end)
        decision = decided.to_json()
        if not shared.excluded(ls, doc) and is_tier(decided.tier):
            hole = decided.features.get("hole")
            decision["cached"] = ls.pipeline.in_cache(kind, doc, start, end, decided.tier, hole)
        return decision

    @server.command("mmx.stats")
    async def stats(ls: MmxServer, *args: Any) -> dict[str, Any]:
        """This session's requests, summarized from the metrics database."""
        try:
            params = _args(args) if args else {}
            since = params.get("since")
            parse_since(since)  # a bad time is the caller's error, said before any waiting
            return await asyncio.to_thread(ls.pipeline.stats, since)
        except (InvalidParams, ValueError, MetricsError, sqlite3.Error) as exc:
            raise _fail(f"mmx.stats: {exc}") from None

    @server.command("mmx.health")
    async def health(ls: MmxServer, *args: Any) -> dict[str, Any]:
        """Whether each tier's endpoint answers, and what to fix (no key in the answer)."""
        from mmx_lsp import health as checks

        try:
            params = _args(args) if args and args != ([],) else {}
        except InvalidParams as exc:
            raise _fail(f"mmx.health: {exc}") from None
        probe_fim = params.get("probe_fim", True)
        if not isinstance(probe_fim, bool):
            raise _fail("mmx.health: probe_fim must be true or false")
        return await checks.check(ls.settings, probe_fim=probe_fim)

    def verdict(ls: MmxServer, args: tuple[Any, ...], value: str) -> dict[str, Any]:
        try:
            params = _args(args)
            request_id = params.get("request_id")
            if not isinstance(request_id, str) or not request_id:
                raise InvalidParams("request_id is required")
        except InvalidParams as exc:
            raise _fail(f"mmx.{value}: {exc}") from None
        known = ls.pipeline.verdict(request_id, value)
        if not known:
            log.info("mmx.%s for %s, a request this session did not record", value, request_id)
        return {"request_id": request_id, "verdict": value, "recorded": known}

    @server.command("mmx.accepted")
    def accepted(ls: MmxServer, *args: Any) -> dict[str, Any]:
        return verdict(ls, args, "accepted")

    @server.command("mmx.rejected")
    def rejected(ls: MmxServer, *args: Any) -> dict[str, Any]:
        return verdict(ls, args, "rejected")
