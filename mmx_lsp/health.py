"""Checks that each configured tier's endpoint answers (`mmx.health`, `:checkhealth mmx`).

For every tier: is the endpoint reachable (`GET /models`), does it list the tier's model, how
long did it take, and, for a tier with `api = "completions"`, does a `suffix` really give
fill-in-the-middle. What is detected, and how:

* the endpoint refuses a completion with a `suffix` (HTTP 4xx): no;
* the endpoint echoes the prompt it assembled (`echo: true`) with the suffix before the
  prefix: no;
* the endpoint is llama-cpp-python (its OpenAPI title says so): no — up to at least 0.3.36 its
  `/v1/completions` puts token 0 where the model's fill-in-the-middle tokens belong, so a
  suffix garbles the prompt (and defeats its prompt cache);
* otherwise the suffix was accepted but nothing shows how the model used it: unknown.

Every text in the result is redacted: no API key ever appears in it.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

from mmx_lsp.config import Settings
from mmx_lsp.kinds import Tier
from mmx_lsp.providers import Providers
from mmx_lsp.redaction import redact

log = logging.getLogger(__name__)

# One HTTP call of the check waits at most this long (a local CPU model answers /models at once).
CHECK_TIMEOUT_S = 5.0
PROBE_PREFIX = "def mmx_probe():\n    first = 'MMX-PREFIX'\n"
PROBE_SUFFIX = "\n    last = 'MMX-SUFFIX'\n    return first\n"
CHAT_HINT = 'set api = "chat" for this tier'
FIM_MODELS = (
    "a code model with fill-in-the-middle tokens (Qwen2.5-Coder, DeepSeek-Coder, Codestral)"
)

Fim = Literal["yes", "no", "unknown", "n/a"]


@dataclass
class TierHealth:
    """What the check found for one tier; `problem` says what to fix (None: nothing)."""

    tier: str
    provider: str
    model: str
    api: str
    base_url: str
    reachable: bool | None = None  # None: not checked (the tier cannot be called)
    model_listed: bool | None = None  # None: the endpoint lists no models
    latency_ms: int | None = None
    fim: Fim = "n/a"
    fim_detail: str = ""
    problem: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "tier": self.tier,
            "provider": self.provider,
            "model": self.model,
            "api": self.api,
            "base_url": self.base_url,
            "reachable": self.reachable,
            "model_listed": self.model_listed,
            "latency_ms": self.latency_ms,
            "fim": self.fim,
            "fim_detail": self.fim_detail,
            "problem": self.problem,
            "ok": self.problem is None,
        }


@dataclass(frozen=True)
class _Reply:
    status: int
    body: Any  # parsed JSON, or None
    text: str


class _Unreachable(Exception):
    """No HTTP answer at all (refused, unknown host, timeout)."""


def _http(
    method: str, url: str, headers: Mapping[str, str], payload: Any, timeout_s: float
) -> _Reply:
    data = None if payload is None else json.dumps(payload).encode()
    request = urllib.request.Request(url, data=data, method=method)
    for name, value in {**headers, "Content-Type": "application/json"}.items():
        request.add_header(name, value)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        # Refused, no such host, timed out, or the answer cut off.
        reason = getattr(exc, "reason", exc)
        raise _Unreachable(str(reason) or type(reason).__name__) from None
    text = raw.decode("utf-8", errors="replace")
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    return _Reply(status, body, text)


def _error_message(reply: _Reply) -> str:
    body = reply.body
    if isinstance(body, Mapping):
        error = body.get("error", body.get("detail", body))
        message = error.get("message") if isinstance(error, Mapping) else error
        if message:
            return str(message)[:200]
    return reply.text.strip()[:200]


def _root(base_url: str) -> str:
    """The server's root: base_url without a trailing /v1 (where llama.cpp's extras live)."""
    parts = urlsplit(base_url.rstrip("/"))
    path = parts.path[: -len("/v1")] if parts.path.endswith("/v1") else parts.path
    return urlunsplit((parts.scheme, parts.netloc, path, "", ""))


class _Checker:
    def __init__(self, settings: Settings, providers: Providers, timeout_s: float) -> None:
        self._settings = settings
        self._providers = providers
        self._timeout_s = timeout_s
        self._secrets = providers.secrets()

    def clean(self, text: str) -> str:
        return redact(text, self._secrets)

    async def call(self, tier: Tier, method: str, url: str, payload: Any = None) -> _Reply:
        headers = self._providers.request_headers(tier)
        return await asyncio.to_thread(_http, method, url, headers, payload, self._timeout_s)

    def start(self, name: Tier) -> tuple[TierHealth, str]:
        """A tier's health before any check, and its endpoint's base URL."""
        tier = self._settings.tiers[name]
        provider = self._settings.providers.get(tier.provider)
        base = provider.base_url.rstrip("/") if provider is not None else ""
        health = TierHealth(name, tier.provider, tier.model, tier.api, self.clean(base))
        health.fim = "unknown" if tier.api == "completions" else "n/a"
        return health, base

    async def tier(self, name: Tier, *, probe_fim: bool) -> TierHealth:
        health, base = self.start(name)
        not_ready = self._providers.configured(name)
        if not_ready is not None:
            health.problem = self.clean(not_ready)
            return health
        await self._models(name, base, health)
        if health.api == "completions" and health.reachable and probe_fim:
            await self.fim(name, base, health)
        if health.problem is not None:
            health.problem = self.clean(health.problem)
        health.fim_detail = self.clean(health.fim_detail)
        return health

    async def _models(self, name: Tier, base: str, health: TierHealth) -> None:
        where = f"providers.{health.provider}.base_url"
        started = time.monotonic()
        try:
            reply = await self.call(name, "GET", f"{base}/models")
        except _Unreachable as exc:
            health.reachable = False
            health.problem = f"cannot reach {base} ({exc}): start the model server, or fix {where}"
            return
        health.latency_ms = round((time.monotonic() - started) * 1000)
        health.reachable = True
        env = self._settings.providers[health.provider].api_key_env or "the API key"
        if reply.status in (401, 403):
            health.problem = (
                f"the endpoint refused the key (HTTP {reply.status}): check {env}, "
                f"the key for provider '{health.provider}'"
            )
        elif reply.status == 404:
            health.problem = (
                f"GET {base}/models answered HTTP 404: check that {where} is the "
                "OpenAI-compatible root (it usually ends in /v1)"
            )
        elif reply.status >= 400:
            health.problem = (
                f"GET {base}/models answered HTTP {reply.status}: {_error_message(reply)}"
            )
        else:
            data = reply.body.get("data") if isinstance(reply.body, Mapping) else None
            if not isinstance(data, list):
                health.problem = (
                    f"GET {base}/models is not an OpenAI-compatible answer: check that "
                    f"{where} ends in /v1"
                )
                return
            ids = [str(m.get("id")) for m in data if isinstance(m, Mapping)]
            health.model_listed = health.model in ids
            if not health.model_listed:
                shown = ", ".join(ids[:5]) + (" …" if len(ids) > 5 else "")
                health.problem = (
                    f"the endpoint does not list model {health.model!r} "
                    f"(it lists: {shown or 'none'}): fix tiers.{health.tier}.model"
                )

    async def fim(self, name: Tier, base: str, health: TierHealth) -> None:
        payload: dict[str, Any] = {
            "model": health.model,
            "prompt": PROBE_PREFIX,
            "suffix": PROBE_SUFFIX,
            "max_tokens": 1,
            "temperature": 0,
            "echo": True,
        }
        try:
            reply = await self.call(name, "POST", f"{base}/completions", payload)
            if 400 <= reply.status < 500 and "echo" in _error_message(reply).lower():
                del payload["echo"]  # some endpoints take a suffix but not with echo
                reply = await self.call(name, "POST", f"{base}/completions", payload)
        except _Unreachable as exc:
            health.fim_detail = f"the probe got no answer ({exc})"
            return
        if 400 <= reply.status < 500:
            health.fim = "no"
            health.fim_detail = (
                f"the endpoint refused a completion with a suffix (HTTP {reply.status}: "
                f"{_error_message(reply)})"
            )
            health.problem = f"tier {name} cannot fill in the middle here: {CHAT_HINT}"
            return
        if reply.status >= 400:
            health.fim_detail = f"the probe failed (HTTP {reply.status}: {_error_message(reply)})"
            return
        text = _completion_text(reply.body)
        first, last = text.find("MMX-PREFIX"), text.find("MMX-SUFFIX")
        if first >= 0 and last >= 0 and last < first:
            health.fim = "no"
            health.fim_detail = "the endpoint put the suffix before the prefix"
            health.problem = (
                f"tier {name}: the server does not fill in the middle with {health.model}: "
                f"use {FIM_MODELS}, or {CHAT_HINT}"
            )
            return
        version = await self._llama_cpp_python(name, base)
        if version is not None:
            health.fim = "no"
            health.fim_detail = (
                f"llama-cpp-python {version}: its /v1/completions puts token 0 where the "
                "model's fill-in-the-middle tokens go, so a suffix garbles the prompt and "
                "defeats its prompt cache"
            )
            health.problem = (
                f"tier {name}: {CHAT_HINT}, or serve {FIM_MODELS} with llama.cpp's llama-server"
            )
            return
        health.fim = "unknown"
        health.fim_detail = (
            "the endpoint accepted a suffix, but nothing shows how the model used it; if ghost "
            f"text repeats the code after the cursor, {CHAT_HINT}"
        )

    async def _llama_cpp_python(self, name: Tier, base: str) -> str | None:
        """llama-cpp-python's version when the endpoint is its server (by its OpenAPI title)."""
        try:
            reply = await self.call(name, "GET", f"{_root(base)}/openapi.json")
        except _Unreachable:
            return None
        info = reply.body.get("info") if isinstance(reply.body, Mapping) else None
        if reply.status != 200 or not isinstance(info, Mapping):
            return None
        if "llama.cpp python" not in str(info.get("title", "")).lower():
            return None
        return str(info.get("version") or "?")


class FimWatch:
    """Fill-in-the-middle checked in the request path, not only by `mmx.health`.

    The first completion sent to a tier with `api = "completions"` probes it in the background
    (once per settings; the probe asks for one token). A tier found not to fill in the middle
    is reported once, and its completions are then sent without the code after the cursor,
    which its server would otherwise put before the prefix.
    """

    def __init__(self, warn: Callable[[str], object]) -> None:
        self._warn = warn
        self._settings: Settings | None = None
        self._probed: set[Tier] = set()
        self._no_fim: set[Tier] = set()
        self._waits: dict[Tier, asyncio.Future[None]] = {}

    def suffix_ok(
        self,
        settings: Settings,
        providers: Providers,
        tier: Tier,
        spawn: Callable[[Coroutine[Any, Any, Any], str], object],
    ) -> bool:
        """Whether a completion on `tier` may carry a suffix (probing the tier the first
        time it is asked)."""
        self._follow(settings)
        if tier in self._no_fim:
            return False
        if tier not in self._probed:
            self._probed.add(tier)
            spawn(self._probe(settings, providers, tier), "fill-in-the-middle probe")
        return True

    def prefix_only(self, settings: Settings) -> frozenset[Tier]:
        """The tiers found not to fill in the middle: sent no suffix, and so estimated."""
        return frozenset(self._no_fim) if settings is self._settings else frozenset()

    async def suffix_ok_after_probe(
        self, settings: Settings, providers: Providers, tier: Tier
    ) -> bool:
        """`suffix_ok` for a batch run (`mmx-lsp eval`), where nobody is typing: the first
        completion on `tier` waits for the probe, so that every task is sent as the server
        would send it once it knows."""
        self._follow(settings)
        wait = self._waits.get(tier)
        if wait is None:
            self._probed.add(tier)
            wait = self._waits[tier] = asyncio.ensure_future(self._probe(settings, providers, tier))
        await asyncio.shield(wait)
        return tier not in self._no_fim

    def _follow(self, settings: Settings) -> None:
        if settings is not self._settings:
            self._settings, self._probed, self._no_fim = settings, set(), set()
            self._waits = {}

    async def _probe(self, settings: Settings, providers: Providers, tier: Tier) -> None:
        checker = _Checker(settings, providers, CHECK_TIMEOUT_S)
        health, base = checker.start(tier)
        await checker.fim(tier, base, health)
        log.info("fill-in-the-middle on tier %s: %s (%s)", tier, health.fim, health.fim_detail)
        if health.fim == "no" and settings is self._settings:
            self._no_fim.add(tier)
            self._warn(
                f"mmx: tier {tier} ({health.model}) does not fill in the middle: "
                f"{checker.clean(health.fim_detail)}. Its completions are now sent without the "
                f"code after the cursor; {checker.clean(health.problem or CHAT_HINT)}."
            )


def _completion_text(body: Any) -> str:
    choices = body.get("choices") if isinstance(body, Mapping) else None
    if isinstance(choices, list) and choices and isinstance(choices[0], Mapping):
        return str(choices[0].get("text") or "")
    return ""


async def check(
    settings: Settings,
    environ: Mapping[str, str] | None = None,
    *,
    probe_fim: bool = True,
    timeout_s: float = CHECK_TIMEOUT_S,
) -> dict[str, Any]:
    """Check every tier, one after the other (a local server answers one request at a time).

    Returns `{"ok": bool, "tiers": [TierHealth.to_json(), …]}`.
    """
    providers = Providers(settings, environ)
    checker = _Checker(settings, providers, timeout_s)
    tiers = []
    for name in settings.tiers:
        health = await checker.tier(name, probe_fim=probe_fim)
        log.info(
            "health %s: reachable=%s listed=%s fim=%s %s",
            name,
            health.reachable,
            health.model_listed,
            health.fim,
            health.problem or "ok",
        )
        tiers.append(health.to_json())
    return {"ok": all(t["ok"] for t in tiers), "tiers": tiers}
