"""Command line: serve the LSP (default), explain a decision, show the config, replay a session,
calibrate the router."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mmx_lsp import __version__
from mmx_lsp.kinds import KINDS

if TYPE_CHECKING:
    from mmx_lsp.config import Loaded
    from mmx_lsp.kinds import Kind


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mmx-lsp",
        description="Route code-assistant requests to the cheapest model that does the job.",
    )
    parser.add_argument("--version", action="version", version=f"mmx-lsp {__version__}")
    parser.add_argument("--stdio", action="store_true", help="serve over stdio (the default)")
    parser.add_argument("--tcp", metavar="HOST:PORT", help="serve over TCP, for debugging")
    parser.add_argument("--log-file", type=Path, help="write the log here (default: stderr)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log (-vv: debug)")
    sub = parser.add_subparsers(dest="command")

    explain = sub.add_parser("explain", help="print the routing decision for a place in a file")
    explain.add_argument("location", help="FILE:LINE[:COL] (1-based line and column)")
    explain.add_argument("--to", metavar="LINE[:COL]", help="end of a selection (1-based)")
    explain.add_argument(
        "--kind", choices=KINDS, help="request kind (default: inline, or refactor with --to)"
    )
    explain.add_argument("--language", help="languageId (default: from the file name)")
    explain.add_argument("--json", action="store_true", help="print the Decision as JSON")

    config = sub.add_parser("config", help="print the effective settings and their sources")
    config.add_argument("--workspace", type=Path, default=Path.cwd(), help="workspace root")
    config.add_argument("--json", action="store_true")

    replay = sub.add_parser(
        "replay",
        help="replay a recorded editing session through the server, with no key and no network",
    )
    replay.add_argument(
        "sessions", nargs="+", type=Path, help="session files (fixtures/sessions/*/*.jsonl)"
    )
    replay.add_argument("--json", action="store_true", help="print the decisions as JSON")
    replay.add_argument(
        "--verbose", action="store_true", help="list every decision before the account"
    )
    replay.add_argument(
        "--realtime", action="store_true", help="at the recorded pace (default: as fast as it goes)"
    )
    replay.add_argument(
        "--no-record",
        dest="record",
        action="store_false",
        help="leave the demo metrics database (`stats --demo`) as it is",
    )

    calibrate = sub.add_parser(
        "calibrate",
        help="refit the router from your own verdicts and write a router file servers pick up",
    )
    calibrate.add_argument("--db", type=Path, help="metrics database (default: metrics.path)")
    calibrate.add_argument(
        "--out",
        type=Path,
        help="router file to write (default: routing.router_file or the "
        "user data dir's router.json)",
    )
    calibrate.add_argument("--json", action="store_true", help="print the new router as JSON")

    sub.add_parser("serve", help="serve the LSP over stdio (the default)")
    for name, text in {**METRICS_COMMANDS, EVAL_COMMAND: EVAL_HELP}.items():
        sub.add_parser(name, help=f"{text} (see `mmx-lsp {name} --help`)", add_help=False)
    return parser


def _setup_logging(verbose: int, log_file: Path | None) -> None:
    level = logging.WARNING - 10 * min(verbose, 2) if verbose else logging.INFO
    handler: logging.Handler
    handler = (
        logging.FileHandler(log_file, encoding="utf-8")
        if log_file
        else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose >= 2 else level)
    # pygls logs every message at INFO; keep it for -vv.
    logging.getLogger("pygls").setLevel(logging.DEBUG if verbose >= 2 else logging.WARNING)


# Commands over the metrics database, with arguments of their own (mmx_lsp/stats_cli.py).
METRICS_COMMANDS = {
    "stats": "spend, savings, latency and acceptance per model, tier, kind, language or day",
    "report": "an HTML report with charts of spend, tier mix, acceptance, latency and savings",
    "models": "the tiers, their models and versions, prices and where each price came from",
}
# A task suite against models, with arguments of its own (mmx_lsp/eval_cli.py).
EVAL_COMMAND = "eval"
EVAL_HELP = "run a task suite against models: pass rate, latency, tokens and cost"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in METRICS_COMMANDS:
        from mmx_lsp import stats_cli

        return stats_cli.COMMANDS[argv[0]](argv[1:])
    if argv and argv[0] == EVAL_COMMAND:
        from mmx_lsp import eval_cli

        return eval_cli.main(argv[1:])
    args = _parser().parse_args(argv)
    if args.command == "replay":
        from mmx_lsp import replay

        try:
            return replay.main(
                args.sessions,
                json_output=args.json,
                verbose=args.verbose,
                realtime=args.realtime,
                record=args.record,
            )
        except BrokenPipeError:
            sys.stderr.close()
            return 0
    if args.command == "calibrate":
        from mmx_lsp import calibrate

        return calibrate.main(args.db, args.out, args.json)
    if args.command in ("explain", "config"):
        try:
            return _explain(args) if args.command == "explain" else _config(args)
        except BrokenPipeError:  # `mmx-lsp explain … | head`
            sys.stderr.close()
            return 0
    _setup_logging(args.verbose, args.log_file)
    from mmx_lsp.server import create_server

    server = create_server()
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        if not port.isdigit():
            print("mmx-lsp: --tcp wants HOST:PORT, e.g. 127.0.0.1:2087", file=sys.stderr)
            return 2
        server.start_tcp(host or "127.0.0.1", int(port))
    else:
        server.serve_stdio()
    return 0


def workspace_settings(root: Path) -> Loaded:
    """A workspace's settings for a command, its configuration problems told on stderr."""
    from mmx_lsp import config

    loaded = config.load_workspace(root)
    for issue in loaded.issues:
        print(issue, file=sys.stderr)
    return loaded


def _position(text: str, what: str) -> tuple[int, int | None]:
    parts = text.split(":")
    try:
        line = int(parts[0])
        col = int(parts[1]) if len(parts) > 1 and parts[1] else None
    except ValueError:
        raise SystemExit(f"mmx-lsp explain: {what} must be LINE[:COL], got {text!r}") from None
    if line < 1 or (col is not None and col < 1):
        raise SystemExit(f"mmx-lsp explain: lines and columns start at 1, got {text!r}")
    return line - 1, None if col is None else col - 1


def _explain(args: argparse.Namespace) -> int:
    from mmx_lsp import engine, languages
    from mmx_lsp.documents import Document
    from mmx_lsp.pricing import format_usd
    from mmx_lsp.router_file import RouterSource
    from mmx_lsp.scoring import Request

    location: str = args.location
    file_part, sep, rest = location.partition(":")
    # Allow paths with colons by splitting from the right when possible.
    pieces = location.rsplit(":", 2)
    if len(pieces) == 3 and pieces[1].isdigit() and pieces[2].isdigit():
        file_part, rest = pieces[0], f"{pieces[1]}:{pieces[2]}"
    elif len(pieces) >= 2 and pieces[-1].isdigit():
        file_part, rest = ":".join(pieces[:-1]), pieces[-1]
    elif not sep:
        raise SystemExit("mmx-lsp explain: give FILE:LINE[:COL], e.g. fixtures/python/lru.py:12")
    path = Path(file_part)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise SystemExit(f"mmx-lsp explain: cannot read {path}: {exc.strerror}") from None
    text = data.decode("utf-8", errors="replace")
    language = args.language or languages.language_of_path(str(path))
    doc = Document.open(path.resolve().as_uri(), language, 0, text)
    row, col = _position(rest, "the position")
    if row >= doc.line_count:
        raise SystemExit(f"mmx-lsp explain: {path} has {doc.line_count} lines, not {row + 1}")
    start = doc.clamp(row, col if col is not None else len(doc.line_text(row)))
    end = None
    if args.to:
        end_row, end_col = _position(args.to, "--to")
        end = doc.clamp(end_row, end_col if end_col is not None else len(doc.line_text(end_row)))
        if col is None:
            start = (start[0], 0)
    kind: Kind = args.kind or ("refactor" if end else "inline")
    settings = workspace_settings(Path.cwd()).settings
    router = RouterSource(
        lambda: settings.routing.router_file, lambda m: print(f"mmx-lsp: {m}", file=sys.stderr)
    ).current()
    decision = engine.decide(settings, doc, Request(kind, start, end), router=router)
    if args.json:
        print(json.dumps(decision.to_json(), indent=2))
        return 0
    print(f"{path}:{row + 1}  {kind} → {decision.tier} ({decision.model})")
    print(f"  why:      {decision.reason}")
    print(f"  router:   {decision.router}")
    if decision.p_cheap_ok is not None and decision.expected_usd is not None:
        expected = decision.expected_usd
        print(f"  p_cheap_ok: {decision.p_cheap_ok:.2f} (the chance the cheap answer is good)")
        print(
            f"  expected: cheap first {format_usd(expected['cheap_first'], approx=True)}"
            f"  premium {format_usd(expected['premium'], approx=True)}"
            " (calls plus failed answers)"
        )
    else:
        print(f"  score:    {decision.score:.3f} (threshold {decision.threshold:.2f})")
    estimates = "  ".join(
        f"{tier} {format_usd(cost, approx=True)}" for tier, cost in decision.estimate_usd.items()
    )
    print(f"  estimate: {estimates}")
    print("  features:")
    for name, value in decision.features.items():
        share = decision.contributions.get(name.replace("hole", "hole"), None)
        note = f"  (+{share:.3f})" if share else ""
        print(f"    {name:<24} {value}{note}")
    return 0


def _config(args: argparse.Namespace) -> int:
    from mmx_lsp import config

    loaded = workspace_settings(args.workspace)
    rows = config.effective_items(loaded)
    if args.json:
        out: dict[str, Any] = {key: {"value": value, "source": where} for key, value, where in rows}
        print(json.dumps(out, indent=2))
        return 0
    width = max(len(key) for key, _, _ in rows)
    for key, value, where in rows:
        print(f"{key:<{width}}  {json.dumps(value)}  # {where}")
    return 0
