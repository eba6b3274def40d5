"""Soak figures: `python benchmarks/soak.py [--iterations 10000]`.

1. Memory per request: the server's resident memory over N iterations of one keystroke plus
   one inline request (every tenth asked twice: a cache hit), against a loopback model. The
   growth after warm-up is the slope of a least-squares line through RSS samples, in KB per
   request; flat is the goal (≤ 0.2 KB).
2. A 3.6 MB minified file on one line: keystroke → decision (`didChange` then `mmx.explain`,
   round trip), a request on another file right after each keystroke (no stall), the memory
   the file adds, and the inline request's cost estimate ÷ the cost of the prompt sent.

The loopback server is tests/support/openai_stub.py; nothing leaves the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import string
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from lsprotocol import types
from pygls.lsp.client import LanguageClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import Row, report, start_server, stop_server  # noqa: E402
from benchmarks.model_calls import FUNCTIONS, inline_params, options  # noqa: E402
from tests.support.openai_stub import StubServer  # noqa: E402

WARM_UP = 1000
SAMPLE_EVERY = 250
HUGE_CHARS = 3_600_000


def rss_kb(client: LanguageClient) -> int:
    """The server process's resident set size (Linux /proc)."""
    assert client._server is not None
    status = Path(f"/proc/{client._server.pid}/status").read_text()
    line = next(x for x in status.splitlines() if x.startswith("VmRSS:"))
    return int(line.split()[1])


def slope(points: list[tuple[int, int]]) -> float:
    """Least-squares slope of (requests, KB)."""
    xs, ys = [float(x) for x, _ in points], [float(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else 0.0


def change(uri: str, version: int, start: tuple[int, int], end: tuple[int, int], text: str) -> Any:
    return types.DidChangeTextDocumentParams(
        text_document=types.VersionedTextDocumentIdentifier(uri=uri, version=version),
        content_changes=[
            types.TextDocumentContentChangePartial(
                range=types.Range(types.Position(*start), types.Position(*end)), text=text
            )
        ],
    )


async def memory_soak(iterations: int) -> tuple[float, int, int, int, float]:
    """(KB per request after warm-up, requests, RSS after warm-up, RSS at the end, seconds)."""
    with StubServer(reply="result += value") as stub:
        client = await start_server(options(stub))
        try:
            uri = "file:///bench/soak.py"
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, FUNCTIONS))
            )
            version, requests = 1, 0
            samples: list[tuple[int, int]] = []
            typed = [0] * 200  # characters typed into each function's empty line
            started = time.perf_counter()
            for i in range(iterations):
                function = i % 200
                row = function * 7 + 3
                column = 8 + typed[function]
                version += 1
                if typed[function] == 5:  # delete what was typed: the line is empty again
                    client.text_document_did_change(change(uri, version, (row, 8), (row, 13), ""))
                    typed[function], column = 0, 8
                else:
                    letter = string.ascii_lowercase[(i // WARM_UP) % 26]
                    client.text_document_did_change(
                        change(uri, version, (row, column), (row, column), letter)
                    )
                    typed[function] += 1
                    column += 1
                await client.text_document_inline_completion_async(inline_params(uri, row, column))
                requests += 1
                if i % 10 == 0:  # the same request again: a cache hit
                    await client.text_document_inline_completion_async(
                        inline_params(uri, row, column)
                    )
                    requests += 1
                if i + 1 >= WARM_UP and (i + 1) % SAMPLE_EVERY == 0:
                    samples.append((requests, rss_kb(client)))
            elapsed = time.perf_counter() - started
        finally:
            await stop_server(client)
    return slope(samples), requests - samples[0][0], samples[0][1], samples[-1][1], elapsed


def minified(chars: int) -> str:
    unit = "function f(a,b){return a+b}var x=[1,2,3].map(function(v){return v*2});"
    return (unit * (chars // len(unit) + 1))[:chars]


async def huge_line(keystrokes: int) -> dict[str, float]:
    with StubServer(reply="return a+b") as stub:
        statuses: list[Any] = []
        client = await start_server(options(stub), on_status=statuses.append)
        try:
            small = "file:///bench/small.py"
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    types.TextDocumentItem(small, "python", 1, FUNCTIONS)
                )
            )
            await explain(client, small, 3, 8)
            before = rss_kb(client)
            uri = "file:///bench/app.min.js"
            client.text_document_did_open(
                types.DidOpenTextDocumentParams(
                    types.TextDocumentItem(uri, "javascript", 1, minified(HUGE_CHARS))
                )
            )
            column = HUGE_CHARS // 2
            await explain(client, uri, 0, column)
            decisions, others = [], []
            for version in range(2, keystrokes + 2):
                started = time.perf_counter()
                client.text_document_did_change(change(uri, version, (0, column), (0, column), "x"))
                column += 1
                await explain(client, uri, 0, column)
                decisions.append(time.perf_counter() - started)
                # Another request right after a keystroke: it must not wait behind it.
                client.text_document_did_change(
                    change(uri, version + 10_000, (0, column), (0, column), "y")
                )
                column += 1
                started = time.perf_counter()
                await explain(client, small, 3, 8)
                others.append(time.perf_counter() - started)
            added_mb = (rss_kb(client) - before) / 1024
            await client.text_document_inline_completion_async(inline_params(uri, 0, column))
            while not statuses:
                await asyncio.sleep(0.01)
            status = statuses[-1]
            # The estimate for the tier that answered, against what its call cost.
            estimate = Decimal(str(getattr(status.estimate_usd, status.tier)))
            ratio = float(estimate / Decimal(status.cost_usd_exact))
        finally:
            await stop_server(client)
    return {
        "decision_p50": statistics.median(decisions) * 1000,
        "decision_p95": sorted(decisions)[int(0.95 * len(decisions))] * 1000,
        "other_max": max(others) * 1000,
        "added_mb": added_mb,
        "ratio": ratio,
    }


async def explain(client: LanguageClient, uri: str, line: int, character: int) -> Any:
    return await client.workspace_execute_command_async(
        types.ExecuteCommandParams(
            command="mmx.explain",
            arguments=[{"uri": uri, "position": {"line": line, "character": character}}],
        )
    )


async def run(iterations: int, keystrokes: int) -> int:
    per_request, measured, warm, end, elapsed = await memory_soak(iterations)
    huge = await huge_line(keystrokes)
    rows: list[Row] = [
        (
            "memory growth, KB/request",
            f"{iterations:,} keystrokes + {measured:,} requests after warm-up; RSS "
            f"{warm / 1024:.1f} → {end / 1024:.1f} MB; {elapsed:.0f} s",
            per_request,
            0.2,
        ),
        (
            "3.6 MB line: keystroke → decision p50, ms",
            f"{keystrokes} keystrokes, didChange + mmx.explain round trip",
            huge["decision_p50"],
            50,
        ),
        (
            "3.6 MB line: keystroke → decision p95, ms",
            "",
            huge["decision_p95"],
            50,
        ),
        (
            "another file's request after a keystroke, max ms",
            "mmx.explain on a 1,400-line file",
            huge["other_max"],
            100,
        ),
        ("3.6 MB line: memory added, MB", "open + keystrokes", huge["added_mb"], 50),
        (
            "3.6 MB line: estimate ÷ cost of the prompt sent",
            "inline request, the routed tier (goal: within 2×)",
            huge["ratio"],
            2,
        ),
    ]
    return report("mmx-lsp soak", rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=10_000)
    parser.add_argument("--keystrokes", type=int, default=100)
    args = parser.parse_args()
    return asyncio.run(run(args.iterations, args.keystrokes))


if __name__ == "__main__":
    sys.exit(main())
