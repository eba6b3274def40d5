"""Model-call figures, as ratios within one run: `python benchmarks/model_calls.py`.

1. cache-hit inline completion round trip ÷ a no-op request round trip, same server
2. inline completion through mmx-lsp ÷ the same call made directly with the openai client
   to the same loopback OpenAI-compatible server (which answers after a fixed delay)
3. a recorded VS Code typing session replayed with its own timing against that server:
   backend calls per 100 keystrokes, and total cost ÷ always-premium cost

The loopback server is tests/support/openai_stub.py; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import openai
from lsprotocol import types

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import report, start_server, stop_server  # noqa: E402
from tests.support.openai_stub import StubServer  # noqa: E402

SESSION = ROOT / "fixtures/sessions/vscode/ledger_close_period.jsonl"
CHEAP = {"input_usd_per_mtok": "0.25", "output_usd_per_mtok": "2.00"}
PREMIUM = {"input_usd_per_mtok": "5.00", "output_usd_per_mtok": "30.00"}


def options(stub: StubServer, cache: str = "disk") -> dict[str, Any]:
    provider = {"base_url": stub.base_url, "api_key_env": "MMX_BENCH_NO_KEY", "max_retries": 0}
    return {
        "providers": {"stub": provider},
        "tiers": {
            "cheap": {"provider": "stub", "model": "stub-cheap", **CHEAP},
            "premium": {"provider": "stub", "model": "stub-premium", **PREMIUM},
        },
        "cache": {"backend": cache},
    }


def percentile(samples: list[float], share: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))] * 1000


def inline_params(uri: str, line: int, character: int) -> types.InlineCompletionParams:
    return types.InlineCompletionParams(
        context=types.InlineCompletionContext(
            trigger_kind=types.InlineCompletionTriggerKind.Invoked
        ),
        text_document=types.TextDocumentIdentifier(uri),
        position=types.Position(line, character),
    )


FUNCTIONS = "".join(
    f"def total_{i}(values):\n"
    "    result = 0\n"
    "    for value in values:\n"
    "        \n"
    "    return result\n\n\n"
    for i in range(200)
)


async def cache_hit_vs_noop(repeat: int) -> tuple[list[float], list[float], int]:
    with StubServer(reply="result += value") as stub:
        client = await start_server(options(stub))
        uri = "file:///bench/cache.py"
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, FUNCTIONS))
        )
        # Fill the cache: one call per function, then ask again for each (cache hits).
        for i in range(repeat):
            await client.text_document_inline_completion_async(inline_params(uri, 7 * i + 3, 8))
        calls_before = len(stub.requests)
        hits, noops = [], []
        noop = types.ExecuteCommandParams(
            command="mmx.setTier", arguments=[{"tier": "auto", "scope": "next"}]
        )
        for i in range(repeat):
            start = time.perf_counter()
            result = await client.text_document_inline_completion_async(
                inline_params(uri, 7 * i + 3, 8)
            )
            hits.append(time.perf_counter() - start)
            assert result is not None
            start = time.perf_counter()
            await client.workspace_execute_command_async(noop)
            noops.append(time.perf_counter() - start)
        extra_calls = len(stub.requests) - calls_before
        await stop_server(client)
    return hits, noops, extra_calls


async def through_mmx_vs_direct(repeat: int, delay_s: float) -> tuple[list[float], list[float]]:
    with StubServer(reply="result += value") as stub:
        stub.mode, stub.delay_s = "slow", delay_s  # every answer after `delay_s`
        client = await start_server(options(stub, cache="off"))
        uri = "file:///bench/direct.py"
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, FUNCTIONS))
        )
        direct = openai.AsyncOpenAI(base_url=stub.base_url, api_key="not-needed", max_retries=0)
        await client.text_document_inline_completion_async(inline_params(uri, 3, 8))  # warm up
        await direct.chat.completions.create(
            model="stub-cheap", messages=[{"role": "user", "content": "x"}]
        )
        ours, theirs = [], []
        for i in range(repeat):
            start = time.perf_counter()
            await client.text_document_inline_completion_async(
                inline_params(uri, 7 * (i % 200) + 3, 8)
            )
            ours.append(time.perf_counter() - start)
            prompt = stub.requests[-1]
            start = time.perf_counter()
            stream = await direct.chat.completions.create(
                model=prompt["model"],
                messages=prompt["messages"],
                stream=True,
                stream_options={"include_usage": True},
                max_tokens=prompt.get("max_tokens", 64),
            )
            async for _ in stream:
                pass
            theirs.append(time.perf_counter() - start)
        await direct.close()
        await stop_server(client)
    return ours, theirs


def final_text() -> str:
    """The document as the recorded session leaves it."""
    from mmx_lsp.documents import Document

    doc: Document | None = None
    for line in SESSION.read_text().splitlines():
        message = json.loads(line)["message"]
        params = message.get("params") or {}
        if message.get("method") == "textDocument/didOpen":
            item = params["textDocument"]
            doc = Document.open(item["uri"], item["languageId"], 0, item["text"])
        elif message.get("method") == "textDocument/didChange" and doc is not None:
            for change in params["contentChanges"]:
                start, end = change["range"]["start"], change["range"]["end"]
                doc.apply(
                    (start["line"], start["character"]),
                    (end["line"], end["character"]),
                    change["text"],
                    0,
                )
    assert doc is not None
    return doc.text()


def oracle(final: str) -> Any:
    """A model that answers with what the user went on to type: the rest of the line (the
    whole next line at the start of one). Finds the place by the lines before the hole."""

    def reply(body: dict[str, Any]) -> str:
        user = next((m["content"] for m in body.get("messages", []) if m["role"] == "user"), "")
        before = user.split("<FILL>", 1)[0]
        context = before.split("\n")[-3:]  # the current line's start and the two lines above
        for width in (3, 2, 1):
            probe = "\n".join(context[-width:])
            if not probe.strip():
                continue
            at = final.find(probe)
            if at >= 0 and final.find(probe, at + 1) < 0:  # a unique place only
                rest = final[at + len(probe) :]
                return rest.split("\n", 1)[0]
        return ""

    return reply


async def typing_session(speed: float, delay_s: float) -> dict[str, Any]:
    """Replay the recorded session with its timing (sped up `speed` times), like an editor:
    requests are not awaited before the next keystroke, and $/cancelRequest goes as recorded."""
    from mmx_lsp.replay import _Connection

    records = [json.loads(line) for line in SESSION.read_text().splitlines() if line.strip()]
    with StubServer() as stub:
        stub.reply_fn = oracle(final_text())
        stub.mode, stub.delay_s = "slow", delay_s / speed
        home = Path(tempfile.mkdtemp())
        connection = await _Connection.spawn(home)
        process = connection.process
        pending: list[asyncio.Future[Any]] = []
        keystrokes = 0
        began = time.perf_counter()
        for record in records:
            message = dict(record["message"])
            due = record.get("ms", 0) / 1000 / speed
            wait = due - (time.perf_counter() - began)
            if wait > 0:
                await asyncio.sleep(wait)
            method = message.get("method")
            if method == "initialize":
                message["params"] = {**message["params"], "initializationOptions": options(stub)}
            if method == "textDocument/didChange":
                keystrokes += 1
            if method in ("shutdown", "exit"):
                continue
            if "id" in message:
                future = asyncio.ensure_future(connection.request(message))
                pending.append(future)
                if method == "initialize":
                    await future
            else:
                await connection.send(message)
        await asyncio.gather(*pending, return_exceptions=True)
        await asyncio.sleep(0.5)
        statuses = list(connection.statuses)
        calls = len(stub.requests)
        await connection.send({"jsonrpc": "2.0", "id": "end", "method": "shutdown"})
        await connection.close()
        process.kill()
        await process.wait()
    # DESIGN.md: saved_usd is what the request would have cost on premium minus its cost.
    cost = sum((Decimal(str(s.get("cost_usd") or 0)) for s in statuses), Decimal(0))
    premium = cost + sum((Decimal(str(s.get("saved_usd") or 0)) for s in statuses), Decimal(0))
    return {
        "keystrokes": keystrokes,
        "calls": calls,
        "statuses": len(statuses),
        "cost": cost,
        "premium": premium,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=100)
    parser.add_argument("--delay", type=float, default=0.25, help="loopback model latency, s")
    parser.add_argument(
        "--speed", type=float, default=1.0, help="typing session speed-up (1: as recorded)"
    )
    args = parser.parse_args()
    rows = []

    hits, noops, extra = asyncio.run(cache_hit_vs_noop(args.repeat))
    h, n = statistics.median(hits) * 1000, statistics.median(noops) * 1000
    rows.append(
        (
            "cache-hit inline round trip ÷ no-op round trip",
            f"{h:.2f} ms / {n:.2f} ms ({extra} backend calls during the hits)",
            h / n,
            1.5,
        )
    )
    rows.append(
        ("cache-hit inline round trip, median (ms)", f"p95 {percentile(hits, 0.95):.2f} ms", h, 3.0)
    )

    ours, theirs = asyncio.run(through_mmx_vs_direct(args.repeat, args.delay))
    o50, t50 = statistics.median(ours) * 1000, statistics.median(theirs) * 1000
    rows.append(
        (
            "inline through mmx-lsp ÷ direct openai client, p50",
            f"{o50:.1f} ms / {t50:.1f} ms; "
            f"p95 {percentile(ours, 0.95):.1f} / {percentile(theirs, 0.95):.1f} ms; "
            f"model latency {args.delay * 1000:.0f} ms",
            o50 / t50,
            1.2,
        )
    )

    session = asyncio.run(typing_session(args.speed, args.delay))
    per100 = session["calls"] * 100 / max(session["keystrokes"], 1)
    rows.append(
        (
            "typing session: backend calls per 100 keystrokes",
            f"{session['calls']} calls, {session['keystrokes']} keystrokes, "
            f"{session['statuses']} statuses, {args.speed:g}× speed",
            per100,
            8.0,
        )
    )
    ratio = float(session["cost"] / session["premium"]) if session["premium"] else float("nan")
    rows.append(
        (
            "typing session: cost ÷ always-premium cost",
            f"${session['cost']:.6f} / ${session['premium']:.6f}",
            ratio,
            0.25,
        )
    )

    return report(f"mmx-lsp model-call benchmarks, {args.repeat} samples", rows)


if __name__ == "__main__":
    raise SystemExit(main())
