"""The figures mmx-lsp promises, measured as ratios within one run: `python benchmarks/run.py`.

1. decision after a one-character edit ÷ tree-sitter's bare incremental reparse (5,000 lines)
2. decision time in a 50,000-line file ÷ in a 500-line file
3. cold start to the `initialize` reply ÷ spawning Python and importing pygls.lsp.server
4. listing code actions on a 5,000-line file: median round trip over stdio
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from lsprotocol import types

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import report, start_server, stop_server  # noqa: E402
from mmx_lsp import engine  # noqa: E402
from mmx_lsp.config import Settings  # noqa: E402
from mmx_lsp.documents import Document  # noqa: E402
from mmx_lsp.languages import parser_for  # noqa: E402
from mmx_lsp.scoring import Request  # noqa: E402

SOURCES = [
    ROOT / "fixtures/python/typing_cpython.py",
    ROOT / "fixtures/python/functools_cpython.py",
]


def _top_level_cut(lines: list[str], at: int) -> int:
    """The first line at or after `at` that starts a top-level statement."""
    while at < len(lines) and (lines[at][:1].isspace() or not lines[at].strip()):
        at += 1
    return at


def python_file(lines: int) -> tuple[str, int]:
    """Real code of about `lines` lines with the same function in the middle, and the row
    inside that function where the benchmark types (so every size measures the same edit)."""
    pool = [line for path in SOURCES for line in path.read_text().splitlines(keepends=True)]
    functools = SOURCES[1].read_text().splitlines(keepends=True)
    start = next(i for i, line in enumerate(functools) if line.startswith("def _make_key("))
    target = functools[start : _top_level_cut(functools, start + 1)]
    half = max(0, lines - len(target)) // 2
    filler: list[str] = []
    while len(filler) < lines:
        filler.extend(pool)
    before = filler[: _top_level_cut(filler, half)]
    after = filler[: _top_level_cut(filler, max(0, lines - len(before) - len(target)))]
    text = "".join([*before, "\n\n", *target, "\n\n", *after])
    row = len(before) + 2 + next(i for i, line in enumerate(target) if "key = args" in line)
    return text, row


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def time_each(fn: Callable[[int], object], repeat: int) -> list[float]:
    samples = []
    for i in range(repeat):
        start = time.perf_counter()
        fn(i)
        samples.append(time.perf_counter() - start)
    return samples


def bare_reparse(text: str, row: int, repeat: int) -> list[float]:
    """tree.edit + parser.parse(new, old) for one inserted character, as tree-sitter does alone."""
    parser = parser_for("python")
    assert parser is not None
    lines = text.splitlines(keepends=True)
    col = len(lines[row]) - len(lines[row].lstrip())
    offset = len("".join(lines[:row]).encode()) + col
    tree = parser.parse(text.encode())
    source = text.encode()
    samples = []
    for i in range(repeat):
        new = source[:offset] + b"x" + source[offset:]
        start = time.perf_counter()
        tree.edit(
            start_byte=offset,
            old_end_byte=offset,
            new_end_byte=offset + 1,
            start_point=(row, col + i),
            old_end_point=(row, col + i),
            new_end_point=(row, col + i + 1),
        )
        tree = parser.parse(new, tree)
        samples.append(time.perf_counter() - start)
        source = new
        offset += 1
    return samples


def decisions(text: str, row: int, repeat: int) -> list[float]:
    """What the server does per keystroke: apply the edit, measure, score, route (with the
    server's default router, and answer sizes and prompt counts learned from a full window
    of answers)."""
    from mmx_lsp.answer_sizes import AnswerSizes
    from mmx_lsp.router import load_built_in
    from mmx_lsp.scoring import FEATURE_NAMES

    settings = Settings()
    router = load_built_in(FEATURE_NAMES)
    sizes = AnswerSizes()
    for tier in settings.tiers.values():
        for n in range(50):
            sizes.observe(tier.model, "inline", "line", 10 + n % 7, 0)
            sizes.observe_prompt(tier.model, 200, 230 + n % 11)
    doc = Document.open("file:///bench.py", "python", 0, text)
    doc.tree()
    col = len(doc.line_text(row)) - len(doc.line_text(row).lstrip())

    def one(i: int) -> None:
        doc.apply((row, col + i), (row, col + i), "x", i + 1)
        place = Request("inline", (row, col + i + 1))
        engine.decide(settings, doc, place, router=router, sizes=sizes)

    for i in range(5):  # warm-up, then keep typing where it left off
        one(i)
    col += 5
    return time_each(one, repeat)


def cold_start(runs: int) -> tuple[list[float], list[float]]:
    init = json.dumps(
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "initialize",
            "params": {"processId": None, "rootUri": None, "capabilities": {}},
        }
    )
    message = f"Content-Length: {len(init)}\r\n\r\n{init}".encode()
    env = {**os.environ, "XDG_CONFIG_HOME": tempfile.mkdtemp()}
    server, baseline = [], []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", "import pygls.lsp.server"], check=True, env=env)
        baseline.append(time.perf_counter() - start)

        start = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, "-m", "mmx_lsp"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=env,
        )
        assert proc.stdin and proc.stdout
        proc.stdin.write(message)
        proc.stdin.flush()
        header = proc.stdout.readline()  # the reply's first header line
        server.append(time.perf_counter() - start)
        assert header.startswith(b"Content-Length"), header
        proc.kill()
        proc.wait()
    return server, baseline


async def code_action_round_trips(text: str, row: int, repeat: int) -> list[float]:
    client = await start_server()
    uri = "file:///bench/large.py"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, text))
    )
    params = types.CodeActionParams(
        types.TextDocumentIdentifier(uri),
        types.Range(types.Position(row, 0), types.Position(row + 8, 0)),
        types.CodeActionContext(diagnostics=[]),
    )
    # The server loads the model-call path in a thread after the first didOpen; measure the
    # steady state, after that one-off import.
    await asyncio.sleep(3)
    for _ in range(5):
        await client.text_document_code_action_async(params)
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        actions = await client.text_document_code_action_async(params)
        samples.append(time.perf_counter() - start)
        assert actions
    await stop_server(client)
    return samples


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def resident_memory(documents: int, lines: int) -> tuple[float, float]:
    """RSS of the server idle, and with `documents` open files of `lines` lines in use."""
    client = await start_server()
    assert client._server is not None
    pid = client._server.pid
    await asyncio.sleep(0.5)
    idle = rss_mb(pid)
    text, row = python_file(lines)
    for i in range(documents):
        uri = f"file:///bench/doc{i}.py"
        # Each document differs, as real files do (no string shared between them).
        body = text.replace("_make_key", f"_make_key_{i}")
        client.text_document_did_open(
            types.DidOpenTextDocumentParams(types.TextDocumentItem(uri, "python", 1, body))
        )
        await client.text_document_code_action_async(
            types.CodeActionParams(
                types.TextDocumentIdentifier(uri),
                types.Range(types.Position(row, 0), types.Position(row + 3, 0)),
                types.CodeActionContext(diagnostics=[]),
            )
        )
    await asyncio.sleep(1.0)  # let the idle reparses run
    loaded = rss_mb(pid)
    await stop_server(client)
    return idle, loaded


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200, help="samples per measurement")
    args = parser.parse_args()
    n = args.repeat
    rows = []

    text5k, row = python_file(5_000)
    bare = median_ms(bare_reparse(text5k, row, n))
    ours = median_ms(decisions(text5k, row, n))
    rows.append(
        (
            "decision after 1-char edit ÷ bare incremental reparse, 5,000 lines",
            f"{ours:.3f} ms / {bare:.3f} ms",
            ours / bare,
            1.5,
        )
    )

    (text500, row500), (text50k, row50k) = python_file(500), python_file(50_000)
    small = median_ms(decisions(text500, row500, n))
    large = median_ms(decisions(text50k, row50k, n))
    bare50k = median_ms(bare_reparse(text50k, row50k, max(20, n // 5)))
    rows.append(
        (
            "decision, 50,000 lines ÷ 500 lines",
            f"{large:.3f} ms / {small:.3f} ms (bare reparse at 50k: {bare50k:.2f} ms)",
            large / small,
            3.0,
        )
    )

    server, baseline = cold_start(max(5, n // 40))
    s, b = median_ms(server), median_ms(baseline)
    rows.append(
        (
            "cold start to initialize reply ÷ python + import pygls.lsp.server",
            f"{s:.0f} ms / {b:.0f} ms",
            s / b,
            1.2,
        )
    )

    trips = asyncio.run(code_action_round_trips(text5k, row, n))
    rows.append(
        (
            "code actions on 5,000 lines, median round trip (ms)",
            f"p50 {median_ms(trips):.2f} ms, "
            f"p95 {statistics.quantiles(trips, n=20)[-1] * 1000:.2f} ms",
            median_ms(trips),
            10.0,
        )
    )

    idle, loaded = asyncio.run(resident_memory(20, 5_000))
    rows.append(
        (
            "resident memory, 20 open 5,000-line documents (MB)",
            f"{loaded:.0f} MB (idle server {idle:.0f} MB)",
            loaded,
            120.0,
        )
    )

    return report(f"mmx-lsp benchmarks, {n} samples", rows)


if __name__ == "__main__":
    raise SystemExit(main())
