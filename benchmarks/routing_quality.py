"""Routing and verification judged on real outcomes (../shared/routing-data).

    python benchmarks/routing_quality.py                  # every figure, one run
    python benchmarks/routing_quality.py --no-server      # the offline figures only
    python benchmarks/routing_quality.py --write-router   # refit mmx_lsp/data/router.json

1. The routing decision alone, cross-validated by class (every class scored by a router fitted
   without it): premium cost saved at ≥ 95 % of premium's pass rate, and the AUROC for "cheap
   fails, premium passes", for today's weighted score, the learned router, random routing and
   an oracle — with each of the seven non-premium models as the cheap tier.
2. Which features carry signal.
3. The verifier on the answers the two models really wrote: each check's catches and false
   alarms.
4. The whole policy as the server runs it: the real server process, a loopback provider that
   answers each tier with that model's recorded body, default settings (the router of each
   fold fitted without that fold's classes): quality and cost relative to always-premium, and
   the verifier's confusion.
5. Whether the request's text says anything at all about where the cheap model fails: a
   model over its words, with no feature chosen by hand (`text_signal`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import sysconfig
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import routing_data as rd  # noqa: E402
from benchmarks.text_signal import signal_lines  # noqa: E402
from mmx_lsp.checks import CHECKS, LEAVES_WORK, MEASURED_ONLY  # noqa: E402
from mmx_lsp.config import Settings  # noqa: E402
from mmx_lsp.router import Router, auroc  # noqa: E402
from mmx_lsp.routing import route  # noqa: E402
from mmx_lsp.scoring import Features  # noqa: E402
from mmx_lsp.verify import verify_edit  # noqa: E402

ROUTER_FILE = ROOT / "mmx_lsp" / "data" / "router.json"
GOAL_SAVING = 0.50
GOAL_AUROC = 0.75


def pct(value: float | None) -> str:
    return "  miss" if value is None else f"{value * 100:5.1f}%"


def gain_labels(items: Sequence[rd.Item], cheap: str) -> list[int]:
    return [int(it.passes(rd.PREMIUM_MODEL) and not it.passes(cheap)) for it in items]


def fold_routers(items: Sequence[rd.Item], cheap: str) -> list[tuple[list[int], Router]]:
    out = []
    for test in rd.folds(items):
        held = set(test)
        train = [it for i, it in enumerate(items) if i not in held]
        out.append((test, rd.fit_router(train, cheap, version="fold")))
    return out


def default_decisions(
    items: Sequence[rd.Item], routers: list[tuple[list[int], Router]] | None
) -> list[bool]:
    """What the server's default settings decide for each item (premium or not)."""
    settings = Settings()
    premium = [False] * len(items)
    for test, router in routers or [(list(range(len(items))), None)]:
        for i in test:
            item = items[i]
            features = Features(**{k: v for k, v in item.features.items() if k in _PLAIN})
            features = _with_place(features, item.features)
            decision = route(
                settings, features, item.old_score, {}, request_id="bench", router=router
            )
            premium[i] = decision.tier == "premium"
    return premium


_PLAIN = {f for f in Features.__dataclass_fields__ if f != "place"}


def _with_place(features: Features, values: dict[str, Any]) -> Features:
    from dataclasses import fields, replace

    from mmx_lsp.place import Place

    place = Place(**{f.name: values[f.name] for f in fields(Place)})
    return replace(features, place=place)


def decision_table(items: list[rd.Item]) -> list[str]:
    lines = [
        "1. The routing decision alone, cross-validated by class (5 folds, 46 classes): premium",
        "   cost saved at ≥ 95 % of premium's pass rate (best threshold in hindsight / the default",
        "   settings' own decisions), and AUROC for 'cheap fails, premium passes'.",
        f"   {'cheap model':30} {'oracle':>7} {'random':>7} {'weights: best / default / AUROC':>34}"
        f" {'learned: best / default / AUROC':>34}",
    ]
    for cheap in [m for m in rd.models(items) if m != rd.PREMIUM_MODEL]:
        labels = gain_labels(items, cheap)
        routers = fold_routers(items, cheap)
        risk = [0.0] * len(items)
        for test, router in routers:
            for i in test:
                risk[i] = 1 - router.p_cheap_ok(items[i].features)
        old = [it.old_score for it in items]
        old_best = rd.best_saving(items, old, cheap)[0]
        old_default = rd.saving_at(items, default_decisions(items, None), cheap)
        new_best = rd.best_saving(items, risk, cheap)[0]
        new_default = rd.saving_at(items, default_decisions(items, routers), cheap)
        lines.append(
            f"   {cheap:30} {pct(rd.saving_at(items, rd.oracle(items, cheap), cheap)):>7}"
            f" {pct(rd.random_saving(items, cheap)):>7}"
            f" {pct(old_best):>12} / {pct(old_default)} / {auroc(old, labels):.2f}"
            f" {pct(new_best):>12} / {pct(new_default)} / {auroc(risk, labels):.2f}"
        )
    lines.append(
        f"   goals: saved ≥ {GOAL_SAVING:.0%} by the default decisions, AUROC ≥ {GOAL_AUROC}"
    )
    return lines


def signal_table(items: list[rd.Item]) -> list[str]:
    cheap = rd.CHEAP_MODEL
    gain = gain_labels(items, cheap)
    fails = [int(not it.passes(cheap)) for it in items]
    lines = [
        "2. Signal of each feature (AUROC of the raw value, GPT-3.5-Turbo as cheap; 0.5 = none):",
        f"   {'feature':24} {'cheap fails':>12} {'only premium passes':>20}",
    ]
    carried = []
    for name in (*rd.FEATURES, "annotated_share", "nesting_depth", "siblings", "members"):
        values = [float(it.features[name]) for it in items]
        a, b = auroc(values, fails), auroc(values, gain)
        if max(abs(a - 0.5), abs(b - 0.5)) >= 0.1:
            carried.append(name)
        lines.append(f"   {name:24} {a:12.2f} {b:20.2f}")
    lines.append(
        "   features at least 0.1 from chance: " + (", ".join(carried) if carried else "none")
    )
    return lines


def placed(item: rd.Item, answer: str) -> tuple[int, int, str]:
    """Where the recorded body goes in the file, and the text inserted at the cursor."""
    lines = item.text.split("\n")
    start = sum(len(line) + 1 for line in lines[: item.row]) + item.character
    end = start + len(lines[item.row]) - item.character
    indent = " " * item.character
    body = answer[item.character :] if answer.startswith(indent) else answer.lstrip(" ")
    return start, end, body.rstrip("\n")


def verifier_table(items: list[rd.Item]) -> tuple[list[str], tuple[float, float]]:
    lines = ["3. The verifier on the bodies the models really wrote (catches = failing answers"]
    lines.append(
        "   flagged, false alarms = passing answers flagged; no answer = class did not parse):"
    )
    rates = (0.0, 0.0)
    for model in (rd.CHEAP_MODEL, rd.PREMIUM_MODEL):
        fired: Counter[str] = Counter()
        alarms: Counter[str] = Counter()
        fails = sum(not it.passes(model) for it in items)
        passes = len(items) - fails
        flagged_fail = flagged_pass = 0
        for item in items:
            answer = item.answers.get(model)
            ok = item.passes(model)
            if answer is None:
                checks = {"no answer"}
            else:
                start, end, body = placed(item, answer)
                verdict = verify_edit(
                    "python", item.text, start, end, body, "inline", checks=CHECKS + MEASURED_ONLY
                )
                checks = {f.check for f in verdict.findings}
                if not verdict.ok and not verdict.findings:
                    checks = {"syntax"}
            for check in checks:
                (alarms if ok else fired)[check] += 1
            acted = checks - set(MEASURED_ONLY)
            flagged_fail += bool(acted) and not ok
            flagged_pass += bool(acted) and ok
        lines.append(f"   {model}: {fails} failing, {passes} passing answers")
        for check in ("no answer", "syntax", *CHECKS, *MEASURED_ONLY):
            note = "  (measured, not acted on)" if check in MEASURED_ONLY else ""
            lines.append(
                f"     {check:22} catches {fired[check]:3d}  false alarms {alarms[check]:3d}{note}"
            )
        recall, false_alarms = flagged_fail / fails, flagged_pass / passes
        lines.append(
            f"     {'all acted on':22} catches {flagged_fail:3d} ({recall:.1%} of failures)"
            f"  false alarms {flagged_pass:3d} ({false_alarms:.1%} of passes)"
            f"   goals ≥ 30 % and ≤ 5 %"
        )
        if model == rd.CHEAP_MODEL:
            rates = (round(recall, 4), round(false_alarms, 4))
    lines.append(human_comment_line())
    return lines, rates


def human_comment_line() -> str:
    """How often `leaves_work` fires on comments people wrote: every whole-line comment of
    this Python's standard library (good code, never an unfinished answer)."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen = fired = 0
    for path in root.rglob("*.py"):
        if "site-packages" in path.parts:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        for line in text.splitlines():
            stripped = line.lstrip()
            if stripped.startswith("#"):
                seen += 1
                fired += bool(LEAVES_WORK.search(stripped))
    return (
        f"   leaves_work on comments people wrote: fires on {fired} of {seen:,} whole-line"
        f" comments in {root}"
    )


# ---------------------------------------------------------------- the server


async def whole_policy(items: list[rd.Item], router_mode: str) -> dict[str, Any]:
    """Every request through the real server: loopback tiers that answer with the recorded
    bodies, routers fitted without the fold's classes."""
    from lsprotocol import types

    from benchmarks.harness import start_server, stop_server
    from tests.support.openai_stub import StubServer

    outcome: dict[str, Any] = {"delivered": [], "tiers_called": [], "escalated": 0}
    delivered: list[str | None] = [None] * len(items)
    called: list[list[str]] = [[] for _ in items]
    escalations = [False] * len(items)
    first_tier: list[str] = [""] * len(items)
    tmp = Path(tempfile.mkdtemp(prefix="mmx-routing-"))
    with StubServer() as stub:
        for fold, (test, router) in enumerate(fold_routers(items, rd.CHEAP_MODEL)):
            router_path = tmp / f"router-{fold}.json"
            router_path.write_text(json.dumps(router.to_json()), encoding="utf-8")
            init = {
                "providers": {"loopback": {"base_url": stub.base_url, "api_key_env": ""}},
                "tiers": {
                    "cheap": {
                        "provider": "loopback",
                        "model": "stub-cheap",
                        "input_usd_per_mtok": "0.25",
                        "output_usd_per_mtok": "1.50",
                    },
                    "premium": {
                        "provider": "loopback",
                        "model": "stub-premium",
                        "input_usd_per_mtok": "5.00",
                        "output_usd_per_mtok": "30.00",
                    },
                },
                "routing": {"router": router_mode, "router_file": str(router_path)},
                "cache": {"backend": "off"},
            }
            statuses: dict[str, Any] = {}
            client = await start_server(
                init,
                on_status=lambda p, seen=statuses: seen.update({p.request_id: p}),
            )
            try:
                for i in test:
                    item = items[i]
                    replies = {}
                    for tier, model in (
                        ("stub-cheap", rd.CHEAP_MODEL),
                        ("stub-premium", rd.PREMIUM_MODEL),
                    ):
                        answer = item.answers.get(model)
                        replies[tier] = "" if answer is None else placed(item, answer)[2]
                    stub.reply_by_model = replies
                    uri = f"file:///routing/{fold}/{i}/{item.task_id}.py"
                    client.text_document_did_open(
                        types.DidOpenTextDocumentParams(
                            types.TextDocumentItem(uri, "python", 1, item.text)
                        )
                    )
                    before = set(statuses)
                    await client.text_document_inline_completion_async(
                        types.InlineCompletionParams(
                            text_document=types.TextDocumentIdentifier(uri),
                            position=types.Position(item.row, item.character),
                            context=types.InlineCompletionContext(
                                trigger_kind=types.InlineCompletionTriggerKind.Invoked
                            ),
                        )
                    )
                    for _ in range(200):
                        if set(statuses) - before:
                            break
                        await asyncio.sleep(0.01)
                    new = [statuses[k] for k in set(statuses) - before]
                    if not new:
                        raise RuntimeError(f"no status for {item.task_id}.{item.method}")
                    status = new[0]
                    models = [a.model for a in (status.attempts or [])]
                    called[i] = models
                    escalations[i] = bool(status.escalated)
                    first_tier[i] = "premium" if models and models[0] == "stub-premium" else "cheap"
                    answered = getattr(status, "error", None) is None
                    delivered[i] = (
                        (rd.PREMIUM_MODEL if status.model == "stub-premium" else rd.CHEAP_MODEL)
                        if answered
                        else None
                    )
                    client.text_document_did_close(
                        types.DidCloseTextDocumentParams(types.TextDocumentIdentifier(uri))
                    )
            finally:
                await stop_server(client)
    outcome.update(
        delivered=delivered, tiers_called=called, escalated=escalations, first_tier=first_tier
    )
    return outcome


def policy_lines(items: list[rd.Item], runs: dict[str, dict[str, Any]]) -> list[str]:
    total = sum(it.size for it in items)
    premium_passes = sum(it.passes(rd.PREMIUM_MODEL) for it in items)
    lines = [
        "4. The whole policy through the real server (route, cheap first, verify, escalate),",
        "   GPT-3.5-Turbo as cheap and GPT-4-Turbo as premium, cost ∝ file length, premium 20×:",
    ]
    for name, run in runs.items():
        cost = 0.0
        passed = 0
        for item, models, answered in zip(
            items, run["tiers_called"], run["delivered"], strict=True
        ):
            for model in models:
                cost += item.size if model == "stub-premium" else item.size / rd.PREMIUM_PRICE_RATIO
            passed += bool(answered) and item.passes(answered)
        caught = false_alarm = cheap_fail = cheap_pass = 0
        for item, first, escalated in zip(items, run["first_tier"], run["escalated"], strict=True):
            if first != "cheap":
                continue
            ok = item.passes(rd.CHEAP_MODEL)
            cheap_fail += not ok
            cheap_pass += ok
            caught += escalated and not ok
            false_alarm += escalated and ok
        premium_first = sum(f == "premium" for f in run["first_tier"])
        quality = passed / premium_passes
        relative = cost / total
        lines.append(
            f"   router {name:8}: quality {quality:.3f} of premium's ({passed}/{premium_passes}),"
            f" cost {relative:.3f} of always-premium; {premium_first} routed to premium first"
        )
        lines.append(
            f"   {'':17}verifier: {caught}/{cheap_fail} cheap failures caught"
            f" ({caught / max(cheap_fail, 1):.1%}), {false_alarm}/{cheap_pass} cheap passes"
            f" escalated for nothing ({false_alarm / max(cheap_pass, 1):.1%})"
        )
    cheap_passes = sum(it.passes(rd.CHEAP_MODEL) for it in items)
    lines.append(
        f"   always cheap: quality {cheap_passes / premium_passes:.3f},"
        f" cost {1 / rd.PREMIUM_PRICE_RATIO:.3f}; goals: quality ≥ 0.97 at cost ≤ 0.40;"
        " catches ≥ 30 % with ≤ 5 % escalated for nothing"
    )
    return lines


def write_router(items: list[rd.Item], verifier: tuple[float, float]) -> Router:
    cheap = rd.CHEAP_MODEL
    routers = fold_routers(items, cheap)
    risk = [0.0] * len(items)
    for test, router in routers:
        for i in test:
            risk[i] = 1 - router.p_cheap_ok(items[i].features)
    figures = {
        "cv": "5 folds by class",
        "auroc_cheap_fails_premium_passes": round(auroc(risk, gain_labels(items, cheap)), 3),
        "auroc_cheap_fails": round(auroc(risk, [int(not it.passes(cheap)) for it in items]), 3),
        "saved_at_95_best_threshold": round(rd.best_saving(items, risk, cheap)[0], 3),
        "verifier_recall": verifier[0],
        "verifier_false_alarms": verifier[1],
    }
    router = rd.fit_router(items, cheap, version="classeval-2", verifier=verifier, figures=figures)
    ROUTER_FILE.write_text(json.dumps(router.to_json(), indent=2) + "\n", encoding="utf-8")
    return router


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data", type=Path, default=Path(os.environ.get("MMX_ROUTING_DATA", rd.DEFAULT_DATA))
    )
    parser.add_argument("--no-server", action="store_true", help="skip the server run")
    parser.add_argument("--write-router", action="store_true", help="refit the built-in router")
    args = parser.parse_args(argv)
    if not args.data.exists():
        print(f"routing data not found at {args.data}; pass --data FILE", file=sys.stderr)
        return 2
    items = rd.load(args.data)
    print(
        f"mmx-lsp routing quality — {len(items)} requests in {len({i.task_id for i in items})}"
        f" classes, {args.data.name}"
    )
    verifier_lines, verifier = verifier_table(items)
    if args.write_router:
        router = write_router(items, verifier)
        print(f"wrote {ROUTER_FILE.relative_to(ROOT)} (router {router.version})")
    for line in decision_table(items) + signal_table(items) + verifier_lines:
        print(line)
    if not args.no_server:
        runs = {mode: asyncio.run(whole_policy(items, mode)) for mode in ("learned", "weights")}
        for line in policy_lines(items, runs):
            print(line)
    for line in signal_lines(items):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
