"""What `mmx-lsp replay` prints: a short account of a replayed session, every decision, JSON."""

from __future__ import annotations

from decimal import Decimal
from typing import IO, Any

from mmx_lsp.pricing import format_usd
from mmx_lsp.replay import Decision, Result

_SHORT = {
    "textDocument/inlineCompletion": "inline",
    "textDocument/completion": "completion",
    "codeAction/resolve": "action",
}
# How many decisions the account shows, with their reasons.
SHOWN = 7


def _usd(amount: Decimal) -> str:
    return f"${amount:.6f}"


def representative(decisions: list[Decision]) -> list[Decision]:
    """A few decisions that show the router at work: each premium one, one of each assistant
    action, the completion with the most at stake and the first one."""
    chosen: list[Decision] = [d for d in decisions if d.tier == "premium"][:2]
    kinds: set[str] = set()
    for decision in decisions:
        if decision.method == "codeAction/resolve" and decision.kind not in kinds:
            kinds.add(decision.kind)
            chosen.append(decision)
    typed = [d for d in decisions if d.method != "codeAction/resolve"]
    if typed:
        chosen.append(max(typed, key=lambda d: d.estimate("premium")))
        chosen.append(typed[0])
    unique: list[Decision] = []
    for decision in chosen:
        if decision not in unique:
            unique.append(decision)
    order = {id(d): n for n, d in enumerate(decisions)}
    return sorted(unique[:SHOWN], key=lambda d: order[id(d)])


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def account(result: Result, out: IO[str]) -> None:
    """The default output: what went where and why, the cost, and what was saved."""
    names = ", ".join(path.name for path in result.sessions)
    files = ", ".join(sorted(result.files)) or "the session's files"
    minutes = result.recorded_ms / 60000
    out.write(
        f"Replayed {names}: {result.keystrokes} keystrokes in {files}, "
        f"{minutes:.1f} minutes of editing, in {result.seconds:.1f} s through the real server.\n"
        "Preview mode: no API key, no network, no model called; costs are the router's "
        "estimates.\n\n"
    )
    decisions = result.decisions
    shown = representative(decisions)
    out.write(f"Where requests went, and why ({len(shown)} of {len(decisions)} decisions):\n")
    for decision in shown:
        label = _SHORT.get(decision.method, decision.method)
        kind = decision.kind if label == "action" else label
        out.write(
            f"  {decision.tier:<8} {kind:<10} {decision.position:<22} "
            f"{format_usd(decision.estimate(decision.tier), approx=True)}\n"
            f"           {decision.status.get('reason', '')}\n"
        )
    out.write("\n")
    _costs(result, out)
    out.write("\n")
    _savings(result, out)


def _costs(result: Result, out: IO[str]) -> None:
    by_tier: dict[str, list[Decision]] = {}
    for decision in result.decisions:
        by_tier.setdefault(decision.tier, []).append(decision)
    out.write(f"  {'cost by tier':<30} {'requests':>8}  {'estimate':>10}\n")
    for tier in sorted(by_tier, key=lambda t: (t != "cheap", t)):
        group = by_tier[tier]
        model = group[0].status.get("model", "?")
        cost = sum((d.estimate(tier) for d in group), Decimal(0))
        out.write(f"  {f'{tier} ({model})':<30} {len(group):>8}  {format_usd(cost):>10}\n")
    routed, premium, cheap = result.total(), result.total("premium"), result.total("cheap")
    out.write(f"  {'routed':<30} {len(result.decisions):>8}  {format_usd(routed):>10}\n")
    saved = (1 - routed / premium) * 100 if premium else Decimal(0)
    out.write(
        f"  {'always premium':<30} {'':>8}  {format_usd(premium):>10}"
        f"   routing costs {saved:.0f}% less\n"
    )
    extra = routed - cheap
    out.write(
        f"  {'always cheap':<30} {'':>8}  {format_usd(cheap):>10}"
        f"   premium where it was needed costs {format_usd(extra)} more\n"
    )


def _savings(result: Result, out: IO[str]) -> None:
    answered = len(result.decisions)
    out.write(
        f"Cancellation: of {result.requests} routed requests the editor cancelled "
        f"{result.cancelled} as typing went on, before a model was called: "
        f"{_plural(result.cancelled, 'call')} saved; {answered} were answered.\n"
    )
    recorded = result.recorded
    if recorded is not None:
        out.write(
            f"Reuse: {recorded.cached} answered from the cache, {recorded.reused} from a "
            "suggestion being typed ahead (in preview mode no model answers, so there is "
            "nothing to reuse).\n"
        )
        out.write(
            f"\nRecorded {_plural(recorded.requests, 'request')} in {recorded.path} "
            "(costs marked as estimated). See them with:\n"
            "  mmx-lsp stats --demo\n"
            "  mmx-lsp report --demo\n"
        )
    out.write("--verbose lists every decision; --realtime replays at the recorded pace.\n")


def every_decision(result: Result, out: IO[str]) -> None:
    """`--verbose`: one line per routed request, in order."""
    out.write(
        f"{'#':>4}  {'request':<8} {'at':<22} {'kind':<10} {'tier':<8} {'model':<16} "
        f"{'estimate':>10} {'premium':>10}  why\n"
    )
    for index, decision in enumerate(result.decisions, 1):
        status = decision.status
        out.write(
            f"{index:>4}  {_SHORT.get(decision.method, decision.method):<8} "
            f"{decision.position:<22} {decision.kind:<10} {decision.tier:<8} "
            f"{status.get('model', '?')!s:<16} {_usd(decision.estimate(decision.tier)):>10} "
            f"{_usd(decision.estimate('premium')):>10}  {status.get('reason', '')}\n"
        )


def as_json(result: Result) -> dict[str, Any]:
    routed, premium = result.total(), result.total("premium")
    recorded = result.recorded
    return {
        "sessions": [str(path) for path in result.sessions],
        "keystrokes": result.keystrokes,
        "listings": result.listings,
        "requests": result.requests,
        "cancelled": result.cancelled,
        "decisions": [
            {
                "request": d.number,
                "method": d.method,
                "at": d.position,
                "kind": d.kind,
                "tier": d.tier,
                "model": d.status.get("model"),
                "reason": d.status.get("reason"),
                "estimate_usd": str(d.estimate(d.tier)),
                "premium_usd": str(d.estimate("premium")),
                "cheap_usd": str(d.estimate("cheap")),
                "preview": d.status.get("preview"),
                "latency_ms": d.status.get("latency_ms"),
            }
            for d in result.decisions
        ],
        "total_usd": str(routed),
        "always_premium_usd": str(premium),
        "always_cheap_usd": str(result.total("cheap")),
        "database": None if recorded is None else str(recorded.path),
        "recorded": None
        if recorded is None
        else {
            "requests": recorded.requests,
            "cancelled": recorded.cancelled,
            "cached": recorded.cached,
            "reused": recorded.reused,
        },
    }
