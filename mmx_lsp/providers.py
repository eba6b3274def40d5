"""OpenAI-compatible model calls: one lazy client per provider, streaming, retries, cancellation."""

from __future__ import annotations

import asyncio
import email.utils
import ipaddress
import json
import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

import openai

from mmx_lsp.breaker import Breaker
from mmx_lsp.config import ProviderConfig, Settings, TierConfig, key_env_label, looks_like_key
from mmx_lsp.errors import (
    BadResponse,
    NotConfigured,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
    TierSkipped,
)
from mmx_lsp.kinds import Tier
from mmx_lsp.model_io import ModelReply, ModelRequest
from mmx_lsp.pricing import Usage
from mmx_lsp.redaction import redact
from mmx_lsp.tokens import estimate_tokens

log = logging.getLogger(__name__)

# A stream closed without a finish reason. llama-cpp-python's server does this to a running
# request whenever another arrives, unless it is started with `--interrupt_requests False`.
STREAM_ENDED = (
    "the stream ended before the answer did (llama-cpp-python ends a request when another "
    "arrives: start it with --interrupt_requests False)"
)

# Sent to endpoints on loopback that need no key (Ollama, vLLM, llama.cpp, LM Studio).
PLACEHOLDER_KEY = "not-needed"
LITELLM_COST_HEADER = "x-litellm-response-cost"

# OpenAI's reasoning models take `max_completion_tokens` and only the default temperature.
_REASONING_MODEL = re.compile(r"^(o\d|gpt-5)", re.IGNORECASE)
_SENSITIVE_HEADER = re.compile(r"auth|key|token|secret", re.IGNORECASE)
# Failures that say the endpoint is down (counted by the tier's circuit breaker); a 429 says
# it is up and busy, a 4xx that the request itself was refused.
_OUTAGES = (ProviderUnavailable, ProviderTimeout, BadResponse)


# Where an OpenAI-compatible server that reports no usage may count tokens with its model's
# tokenizer, relative to the server's root (the base URL without /v1): llama-cpp-python's
# server, then llama.cpp's own. Each answers {"count": n} or {"tokens": [...]}.
TOKENIZE_PATHS = (("extras/tokenize/count", "input"), ("tokenize", "content"))
TOKENIZE_TIMEOUT_S = 2.0


# --------------------------------------------------------------------------- helpers


def is_loopback(base_url: str) -> bool:
    """True for an endpoint on this machine (localhost, 127.0.0.0/8, ::1)."""
    host = (urlsplit(base_url).hostname or "").lower()
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _retry_after_s(response: Any) -> float | None:
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    millis = headers.get("retry-after-ms")
    if millis:
        try:
            return max(0.0, float(millis) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        if parsed is None:
            return None
        return max(0.0, parsed.timestamp() - time.time())


def _decimal(value: object) -> Decimal | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        amount = Decimal(str(value).strip())
    except InvalidOperation:
        return None
    return amount if amount.is_finite() and amount >= 0 else None


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    message: object = None
    if isinstance(body, Mapping):
        error = body.get("error", body)
        message = error.get("message") if isinstance(error, Mapping) else error
    text = str(message) if message else ""
    return text if len(text) <= 200 else text[:197] + "..."


@dataclass(frozen=True)
class _Target:
    tier: str
    tier_config: TierConfig
    provider: str
    provider_config: ProviderConfig

    @property
    def where(self) -> str:
        host = urlsplit(self.provider_config.base_url).netloc or self.provider_config.base_url
        return f"{self.tier} tier ({self.tier_config.model} at {host})"


class Providers:
    """Calls the configured tiers' endpoints with the openai async client.

    One client per provider, created on first use. Settings are fixed for the life of an
    instance: build a new `Providers` (and `aclose` the old one) when they change.
    `backoff_s` is the first retry delay (doubled each retry, at most `max_backoff_s`); a
    `Retry-After` from the endpoint replaces it. `environ` (default `os.environ`) is where
    the API keys are read, at call time. Each tier has a circuit breaker (`mmx_lsp.breaker`,
    `breaker=None` for none): after repeated outages its calls fail at once with
    `TierSkipped` for a cool-down.
    """

    def __init__(
        self,
        settings: Settings,
        environ: Mapping[str, str] | None = None,
        *,
        backoff_s: float = 0.5,
        max_backoff_s: float = 8.0,
        breaker: Callable[[str], Breaker] | None = Breaker,
    ) -> None:
        self._settings = settings
        self._environ: Mapping[str, str] = environ if environ is not None else os.environ
        self._backoff_s = backoff_s
        self._max_backoff_s = max_backoff_s
        self._clients: dict[str, openai.AsyncOpenAI] = {}
        # Per provider: the tokenize endpoint that answered, or None when none did.
        self._tokenizers: dict[str, tuple[str, str] | None] = {}
        # None: every call goes through (the eval measures each model on every task).
        self._new_breaker = breaker or (lambda tier: Breaker(tier, failures_to_open=1 << 62))
        self.breakers: dict[str, Breaker] = {}

    # ------------------------------------------------------------------ configuration

    def configured(self, tier: Tier) -> str | None:
        """None when the tier can be called, else a sentence saying what to configure."""
        tier_config = self._settings.tiers.get(tier)
        if tier_config is None:
            return f"tier '{tier}' is not configured: add a [tiers.{tier}] section"
        provider = self._settings.providers.get(tier_config.provider)
        if provider is None:
            return (
                f"tier '{tier}' uses provider '{tier_config.provider}', which is not configured: "
                f"add a [providers.{tier_config.provider}] section"
            )
        if not provider.base_url.strip():
            name = tier_config.provider
            return f"set providers.{name}.base_url, the endpoint of provider '{name}'"
        if looks_like_key(provider.api_key_env):
            return (
                f"fix providers.{tier_config.provider}.{key_env_label(provider)}: set it to the "
                "name of the environment variable that holds the key"
            )
        if self._key(tier_config.provider, provider) is None:
            return f"set {provider.api_key_env}, the key for provider '{tier_config.provider}'"
        return None

    def secrets(self) -> list[str]:
        """Every API key and sensitive header value in use, for `install_redaction`."""
        found: list[str] = []
        for name, provider in self._settings.providers.items():
            key = self._key(name, provider)
            if key and key != PLACEHOLDER_KEY:
                found.append(key)
            if looks_like_key(provider.api_key_env):
                found.append(provider.api_key_env or "")
            found.extend(v for k, v in provider.headers.items() if _SENSITIVE_HEADER.search(k))
        return found

    def _key(self, name: str, provider: ProviderConfig) -> str | None:
        env = provider.api_key_env
        key = self._environ.get(env, "").strip() if env else ""
        if key:
            return key
        if env is None or is_loopback(provider.base_url):
            return PLACEHOLDER_KEY
        return None

    def _target(self, tier: Tier) -> _Target:
        problem = self.configured(tier)
        if problem is not None:
            raise NotConfigured(problem)
        tier_config = self._settings.tiers[tier]
        provider = self._settings.providers[tier_config.provider]
        return _Target(tier, tier_config, tier_config.provider, provider)

    def request_headers(self, tier: Tier) -> dict[str, str]:
        """The HTTP headers a call to `tier` sends, key included (for the endpoint check);
        raises NotConfigured like a call would."""
        target = self._target(tier)
        key = self._key(target.provider, target.provider_config) or PLACEHOLDER_KEY
        return {**target.provider_config.headers, "Authorization": f"Bearer {key}"}

    def _client(self, target: _Target) -> openai.AsyncOpenAI:
        client = self._clients.get(target.provider)
        if client is None:
            config = target.provider_config
            client = openai.AsyncOpenAI(
                base_url=config.base_url,
                api_key=self._key(target.provider, config) or PLACEHOLDER_KEY,
                default_headers=dict(config.headers),
                timeout=config.timeout_s,
                max_retries=0,
            )
            self._clients[target.provider] = client
        return client

    def warm_up(self) -> None:
        """Create the clients of every usable tier now (building one takes a few hundred ms,
        mostly loading TLS certificates), so the first request does not pay for it."""
        for tier in self._settings.tiers:
            if self.configured(tier) is None:
                self._client(self._target(tier))

    async def aclose(self) -> None:
        """Close every client's connection pool."""
        clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            await client.close()

    # ------------------------------------------------------------------ calls

    async def complete(
        self,
        request: ModelRequest,
        *,
        deadline_s: float,
        on_text: Callable[[str], None] | None = None,
    ) -> ModelReply:
        """Stream one answer from the request's tier, retrying transient failures.

        `on_text` receives the whole text received so far after every streamed piece.
        Retries 429, 5xx, dropped connections and per-call timeouts with exponential
        backoff (honouring `Retry-After`) as long as `deadline_s`, counted from the call,
        allows. Raises the `mmx_lsp.errors` provider errors; their messages never contain
        a key. Cancelling the awaiting task closes the HTTP stream.
        """
        target = self._target(request.tier)
        breaker = self.breakers.get(request.tier)
        if breaker is None:
            breaker = self.breakers[request.tier] = self._new_breaker(request.tier)
        skipped = breaker.skip_reason()
        if skipped is not None:
            raise TierSkipped(skipped)
        try:
            reply = await self._complete(target, request, breaker, deadline_s, on_text)
        except asyncio.CancelledError:
            breaker.abandoned()
            raise
        except ProviderError:
            breaker.abandoned()  # a refused request (4xx, 429) says nothing of an outage
            raise
        breaker.succeeded()
        return reply

    async def _complete(
        self,
        target: _Target,
        request: ModelRequest,
        breaker: Breaker,
        deadline_s: float,
        on_text: Callable[[str], None] | None,
    ) -> ModelReply:
        secrets = self.secrets()
        loop = asyncio.get_running_loop()
        started = loop.time()
        end = started + deadline_s
        attempts = 0
        while True:
            attempts += 1
            remaining = end - loop.time()
            try:
                if remaining <= 0:
                    raise TimeoutError
                async with asyncio.timeout(remaining):
                    reply = await self._attempt(target, request, remaining, on_text)
            except TimeoutError:
                breaker.timed_out()
                raise ProviderTimeout(
                    f"{target.where}: no complete answer within {deadline_s:.1f} s"
                ) from None
            except ProviderError as exc:
                delay = self._delay(exc, attempts)
                retries_left = attempts <= target.provider_config.max_retries
                if isinstance(exc, ProviderTimeout):
                    opened = breaker.timed_out()  # slow, not down (unless it keeps on)
                else:
                    opened = isinstance(exc, _OUTAGES) and breaker.failed()
                if opened:
                    # The tier keeps failing: no more retries, the caller falls back now.
                    raise _clean(exc, secrets, f"; {breaker.skip_reason()}") from None
                if not exc.retryable or not retries_left:
                    raise _clean(exc, secrets) from None
                if loop.time() + delay >= end:
                    raise _clean(
                        exc, secrets, f"; a retry in {delay:.2g} s would pass the deadline"
                    ) from None
                log.info("%s; retry %d in %.2f s", redact(str(exc), secrets), attempts, delay)
                await asyncio.sleep(delay)
                continue
            return ModelReply(
                text=reply.text,
                model=reply.model,
                usage=reply.usage,
                reported_cost_usd=reply.reported_cost_usd,
                latency_ms=(loop.time() - started) * 1000,
                attempts=attempts,
                usage_estimated=reply.usage_estimated,
                usage_source=reply.usage_source,
                cut_off=reply.cut_off,
            )

    def _delay(self, exc: ProviderError, attempt: int) -> float:
        if isinstance(exc, RateLimited) and exc.retry_after_s is not None:
            return exc.retry_after_s
        return min(self._max_backoff_s, self._backoff_s * 2 ** (attempt - 1))

    async def _attempt(
        self,
        target: _Target,
        request: ModelRequest,
        remaining_s: float,
        on_text: Callable[[str], None] | None,
    ) -> ModelReply:
        client = self._client(target)
        timeout = min(target.provider_config.timeout_s, remaining_s)
        model = target.tier_config.model
        try:
            stream: openai.AsyncStream[Any]
            if request.api == "chat":
                reasoning = bool(_REASONING_MODEL.match(model.rsplit("/", 1)[-1]))
                # Plain role/content dicts; the SDK's TypedDict union is too narrow for them.
                messages: Any = request.messages or []
                stream = await client.chat.completions.create(
                    model=model,
                    messages=messages,
                    max_tokens=openai.omit if reasoning else request.max_tokens,
                    max_completion_tokens=request.max_tokens if reasoning else openai.omit,
                    temperature=openai.omit if reasoning else request.temperature,
                    stop=request.stop or openai.omit,
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=timeout,
                )
            else:
                stream = await client.completions.create(
                    model=model,
                    prompt=request.prompt or "",
                    suffix=request.suffix if request.suffix is not None else openai.omit,
                    max_tokens=request.max_tokens,
                    temperature=request.temperature,
                    stop=request.stop or openai.omit,
                    stream=True,
                    stream_options={"include_usage": True},
                    timeout=timeout,
                )
            try:
                return await self._read(target, request, stream, on_text)
            finally:
                # Also on cancellation: closing the response closes the HTTP connection.
                await stream.close()
        except openai.APITimeoutError:
            raise ProviderTimeout(f"{target.where}: no answer within {timeout:g} s") from None
        except openai.APIConnectionError as exc:
            cause = exc.__cause__ or exc.__context__
            detail = f" ({type(cause).__name__})" if cause else ""
            raise ProviderUnavailable(
                f"{target.where}: connection failed or dropped{detail}; "
                f"check that {target.provider_config.base_url} is reachable"
            ) from None
        except openai.RateLimitError as exc:
            retry_after = _retry_after_s(exc.response)
            hint = f"; retry after {retry_after:g} s" if retry_after is not None else ""
            raise RateLimited(
                f"{target.where}: rate limited (HTTP 429){hint}", retry_after
            ) from None
        except (openai.AuthenticationError, openai.PermissionDeniedError) as exc:
            env = key_env_label(target.provider_config)
            raise NotConfigured(
                f"{target.where}: the endpoint refused the key (HTTP {exc.status_code}); "
                f"check {env}, the key for provider '{target.provider}'"
            ) from None
        except openai.NotFoundError as exc:
            raise NotConfigured(
                f"{target.where}: not found (HTTP 404: {_provider_message(exc)}); check "
                f"tiers.{target.tier}.model and providers.{target.provider}.base_url"
            ) from None
        except openai.APIStatusError as exc:
            detail = _provider_message(exc)
            detail = f": {detail}" if detail else ""
            if exc.status_code >= 500 or exc.status_code in (408, 409):
                raise ProviderUnavailable(
                    f"{target.where}: server error (HTTP {exc.status_code}){detail}"
                ) from None
            raise ProviderError(
                f"{target.where}: request rejected (HTTP {exc.status_code}){detail}"
            ) from None
        except (json.JSONDecodeError, openai.APIResponseValidationError):
            raise BadResponse(
                f"{target.where}: the endpoint's answer is not OpenAI-compatible JSON; "
                f"check that providers.{target.provider}.base_url ends in /v1"
            ) from None
        except openai.APIError as exc:
            # An error event in the middle of a stream.
            raise ProviderUnavailable(f"{target.where}: stream error: {exc.message}") from None

    async def _read(
        self,
        target: _Target,
        request: ModelRequest,
        stream: openai.AsyncStream[Any],
        on_text: Callable[[str], None] | None,
    ) -> ModelReply:
        parts: list[str] = []
        reported_model = ""
        usage: Any = None
        chunks = 0
        finished = False
        cut_at: int | None = None  # characters received when the answer was cut
        cut_text = ""
        cut_off = False  # the endpoint stopped the answer at max_tokens
        async for chunk in stream:
            chunks += 1
            reported_model = getattr(chunk, "model", None) or reported_model
            usage = getattr(chunk, "usage", None) or usage
            for choice in getattr(chunk, "choices", None) or []:
                if request.api == "chat":
                    delta = getattr(choice, "delta", None)
                    piece = getattr(delta, "content", None) if delta is not None else None
                else:
                    piece = getattr(choice, "text", None)
                reason = getattr(choice, "finish_reason", None)
                if reason:
                    finished = True
                    cut_off = cut_off or reason == "length"
                if isinstance(piece, str) and piece:
                    parts.append(piece)
                    if request.cut is not None:
                        at = request.cut("".join(parts))
                        if at is not None:
                            cut_text = "".join(parts)
                            parts, cut_at, finished = [cut_text[:at]], len(cut_text), True
                    if on_text is not None:
                        on_text("".join(parts))
            if cut_at is not None:
                break
        # Closed before anything else is asked of the server: one that serves a request at a
        # time (llama.cpp) stops writing a cut answer only when its client hangs up.
        await stream.close()
        if chunks == 0:
            raise BadResponse(
                f"{target.where}: the endpoint sent no completion events; check that "
                f"providers.{target.provider}.base_url is an OpenAI-compatible /v1 endpoint"
            )
        if not finished and usage is None:
            raise ProviderUnavailable(f"{target.where}: {STREAM_ENDED}")
        text = "".join(parts)
        received = text
        received_all = text if cut_at is None else cut_text
        header_cost = _decimal(stream.response.headers.get(LITELLM_COST_HEADER))
        if usage is not None:
            details = getattr(usage, "prompt_tokens_details", None)
            cached = getattr(details, "cached_tokens", None) if details is not None else None
            tokens = Usage(
                input_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
                output_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
                cached_input_tokens=int(cached or 0),
            )
            usage_cost = _decimal(getattr(usage, "cost", None))
            source = "provider"
        else:
            # What was sent and what the model wrote (all of it, past a cut).
            sent = [m.get("content", "") for m in request.messages or []]
            sent += [request.prompt or "", request.suffix or ""]
            written = received if cut_at is None else received_all
            counted = await self._count_tokens(target, ["".join(sent), written])
            usage_cost = None
            if counted is not None:
                # Each chat message adds a few template tokens around its content.
                framing = 4 * len(request.messages or [])
                tokens = Usage(counted[0] + framing, counted[1])
                source = "tokenizer"
            else:
                tokens = Usage(estimate_tokens("\n".join(sent)), estimate_tokens(written))
                source = "estimate"
                log.debug("%s reported no usage; tokens estimated", target.where)
        return ModelReply(
            text=text,
            model=reported_model or target.tier_config.model,
            usage=tokens,
            reported_cost_usd=usage_cost if usage_cost is not None else header_cost,
            latency_ms=0.0,
            attempts=1,
            usage_estimated=source == "estimate",
            usage_source=source,
            cut_off=cut_off,
        )

    async def _count_tokens(self, target: _Target, texts: list[str]) -> list[int] | None:
        """Token counts of `texts` by the endpoint's own tokenizer, when it has a tokenize
        endpoint (llama.cpp's servers); None when it has none (remembered per provider)."""
        known = self._tokenizers.get(target.provider, ())
        if known is None:
            return None
        root = target.provider_config.base_url.rstrip("/").removesuffix("/v1")
        candidates = [known] if known else list(TOKENIZE_PATHS)
        client = self._client(target)
        for path, field_name in candidates:
            counts: list[int] = []
            try:
                for text in texts:
                    body: Any = await client.post(
                        f"{root}/{path}",
                        cast_to=object,
                        body={field_name: text, "model": target.tier_config.model},
                        options={"timeout": TOKENIZE_TIMEOUT_S, "max_retries": 0},
                    )
                    count = body.get("count") if isinstance(body, dict) else None
                    if count is None and isinstance(body, dict):
                        count = len(body.get("tokens") or [])
                    if not isinstance(count, int):
                        raise ValueError("no count")
                    counts.append(count)
            except (openai.APITimeoutError, openai.APIConnectionError):
                return None  # no answer this time: estimated, and asked again next time
            except (openai.APIError, ValueError, TypeError, json.JSONDecodeError):
                continue
            self._tokenizers[target.provider] = (path, field_name)
            return counts
        self._tokenizers[target.provider] = None
        return None


def _clean(exc: ProviderError, secrets: Iterable[str], extra: str = "") -> ProviderError:
    """The same error with its message redacted (and `extra` appended)."""
    message = redact(str(exc), secrets) + extra
    if isinstance(exc, RateLimited):
        return RateLimited(message, exc.retry_after_s)
    return type(exc)(message)
