"""Settings: one pydantic model, and the merging of every source into it, key by key."""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from mmx_lsp import globs
from mmx_lsp.kinds import TIERS, Kind, Tier, is_action_kind

CONFIG_SCHEMA_VERSION = 1


DEFAULT_EXCLUDE = [
    ".env",
    ".env.*",
    "**/*.pem",
    "**/*.key",
    "**/id_rsa*",
    "**/.ssh/**",
    "**/secrets/**",
]

# Keys that belong to the editor clients; the server accepts and ignores them.
CLIENT_KEYS = frozenset({"server"})


class _Section(BaseModel):
    # Unknown keys are kept aside (extra="allow") so they can be reported by name and dropped.
    model_config = ConfigDict(extra="allow", validate_default=True, frozen=True)


class ProviderConfig(_Section):
    """An OpenAI-compatible endpoint."""

    base_url: str = "https://api.openai.com/v1"
    api_key_env: str | None = Field(
        default="OPENAI_API_KEY",
        description="Name of the environment variable that holds the key (never the key itself).",
    )
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")
    timeout_s: float = Field(default=30.0, gt=0, description="Timeout of one HTTP call.")
    max_retries: int = Field(default=2, ge=0, le=10, description="Retries on 429 and 5xx.")


# An environment variable's name as shells write it.
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
KEY_IN_KEY_ENV = "api_key_env looks like a key itself, not the name of an environment variable"


def looks_like_key(api_key_env: str | None) -> bool:
    """True when `api_key_env` holds what looks like a key pasted in by mistake: not a
    variable name at all, or a long mix of lower case and digits that no one names a
    variable with. Such a value is never shown anywhere."""
    if not api_key_env:
        return False
    if not _ENV_NAME.fullmatch(api_key_env):
        return True
    return (
        len(api_key_env) >= 24
        and any(c.islower() for c in api_key_env)
        and any(c.isdigit() for c in api_key_env)
    )


def key_env_label(provider: ProviderConfig) -> str:
    """How a message names a provider's key variable: its name, never a pasted key."""
    if looks_like_key(provider.api_key_env):
        return f"api_key_env (it {KEY_IN_KEY_ENV.removeprefix('api_key_env ')})"
    return provider.api_key_env or "the API key"


class TierConfig(_Section):
    """One model tier: which provider, which model, how to call it, what it costs."""

    provider: str = "openai"
    model: str
    api: Literal["chat", "completions"] = Field(
        default="chat",
        description='"chat" (hole-filler prompt) or "completions" (fill-in-the-middle).',
    )
    input_usd_per_mtok: Decimal | None = Field(default=None, ge=0)
    cached_input_usd_per_mtok: Decimal | None = Field(default=None, ge=0)
    output_usd_per_mtok: Decimal | None = Field(default=None, ge=0)
    max_output_tokens: int | None = Field(
        default=None,
        gt=0,
        le=65536,
        description="Cap on the answers of this tier (limits.<kind>.max_output_tokens applies "
        "first); lower it for a model on a CPU, where every answer token costs time.",
    )
    max_context_tokens: int | None = Field(
        default=None,
        gt=0,
        description="Cap on the context of this tier's prompts (limits.<kind>.context_tokens "
        "applies first); lower it for a model on a CPU, where every prompt token costs time.",
    )


# What `limits` is keyed by: the hole an inline completion fills (an expression or a line is
# a "line"), or the kind of a code action.
LimitKey = Literal["line", "block", "body", "refactor", "fix", "docstring", "explain"]
LIMIT_KEYS: tuple[LimitKey, ...] = get_args(LimitKey)


class KindLimits(_Section):
    """How big one kind of request is: its context, its answer, its deadline, its stops."""

    context_tokens: int = Field(default=2000, gt=0, le=200_000)
    max_output_tokens: int = Field(default=1024, gt=0, le=65536)
    deadline_s: float = Field(default=60.0, gt=0, le=600)
    stop: list[str] = Field(default_factory=list, max_length=4)

    @field_validator("stop")
    @classmethod
    def _no_empty_stop(cls, value: list[str]) -> list[str]:
        if any(not item for item in value):
            raise ValueError("a stop sequence cannot be empty")
        return value


def limit_key(kind: Kind, hole: object = None) -> LimitKey:
    """Which `limits` entry a request follows: the hole of a completion (an expression
    counts as a line), the kind of a code action."""
    if is_action_kind(kind):
        return kind
    if hole in ("block", "body"):
        return "block" if hole == "block" else "body"
    return "line"


@cache
def default_context_tokens(key: LimitKey) -> int:
    """The context budget of a `limits` entry by default (for estimates made without
    settings, such as a request's features)."""
    return _default_limits()[key].context_tokens


def _default_limits() -> dict[LimitKey, KindLimits]:
    # Sized for a small model on two CPU cores (where 1,000 prompt tokens take seconds) that
    # still serve a hosted one: a line needs the lines around it, a body its definition and
    # neighbours; ghost text later than a few seconds is useless, an edit is worth a wait.
    return {
        "line": KindLimits(context_tokens=192, max_output_tokens=48, deadline_s=4.0, stop=["\n"]),
        "block": KindLimits(
            context_tokens=384, max_output_tokens=128, deadline_s=6.0, stop=["\n\n\n"]
        ),
        "body": KindLimits(
            context_tokens=640, max_output_tokens=256, deadline_s=10.0, stop=["\n\n\n"]
        ),
        "refactor": KindLimits(context_tokens=2000, max_output_tokens=2048, deadline_s=60.0),
        "fix": KindLimits(context_tokens=2000, max_output_tokens=2048, deadline_s=60.0),
        "docstring": KindLimits(context_tokens=2000, max_output_tokens=2048, deadline_s=60.0),
        "explain": KindLimits(context_tokens=2000, max_output_tokens=1024, deadline_s=45.0),
    }


class RuleWhen(_Section):
    """Conditions of a routing rule; all given conditions must hold."""

    kind: Kind | list[Kind] | None = None
    language: str | list[str] | None = None
    path: str | None = Field(default=None, description="Glob matched against the file path.")
    min_lines: int | None = Field(default=None, ge=0)
    max_lines: int | None = Field(default=None, ge=0)
    min_definitions: int | None = Field(default=None, ge=0)
    max_definitions: int | None = Field(default=None, ge=0)
    min_score: float | None = Field(default=None, ge=0, le=1)
    max_score: float | None = Field(default=None, ge=0, le=1)


class Rule(_Section):
    when: RuleWhen = Field(default_factory=RuleWhen)
    tier: Tier


class RoutingConfig(_Section):
    premium_above: float = Field(default=0.55, ge=0, le=1, description="Score threshold.")
    cascade: bool = Field(default=True, description="Cheap first; escalate on a failed check.")
    daily_budget_usd: Decimal | None = Field(default=None, gt=0)
    budget_soft_start: float = Field(
        default=0.5,
        ge=0,
        lt=1,
        description="Fraction of the daily budget after which the threshold starts to rise.",
    )
    cache_only_over_budget: bool = Field(
        default=False, description="Once the budget is spent, answer only from the cache."
    )
    rules: list[Rule] = Field(default_factory=list)
    router: Literal["learned", "weights"] = Field(
        default="learned",
        description="learned: the estimate that the cheap answer is good, weighed against "
        "prices; weights: the fixed weighted score and premium_above.",
    )
    router_file: str | None = Field(
        default=None,
        description="Router file from mmx-lsp calibrate (router.json in the user data dir).",
    )
    failed_answer_usd: Decimal = Field(
        default=Decimal("0.02"),
        ge=0,
        description="What an answer that fails costs you (reading and dismissing or undoing "
        "it); weighed against the premium price. Whole bodies go to premium first from about "
        "$0.03-0.05 at the built-in prices.",
    )


class CacheConfig(_Section):
    backend: Literal["disk", "redis", "off"] = "disk"
    url: str = Field(default="", description="redis://… for a team-shared cache.")
    dir: str | None = Field(default=None, description="diskcache directory (user cache dir).")
    size_limit_mb: int = Field(default=256, gt=0)
    ttl_s: int = Field(default=7 * 24 * 3600, gt=0)
    key_prefix: str = "mmx:"


class PrivacyConfig(_Section):
    exclude: list[str] = Field(default_factory=lambda: list(DEFAULT_EXCLUDE))
    store_prompts: bool = False


class MetricsConfig(_Section):
    path: str | None = Field(default=None, description="SQLite file (user data dir).")
    retention_days: int = Field(default=90, gt=0)
    regression_margin: float = Field(
        default=0.10,
        gt=0,
        lt=1,
        description="Drop in a model version's acceptance or eval pass rate that warns.",
    )
    regression_min_samples: int = Field(
        default=30, gt=0, description="Verdicts (or eval results) needed in each window."
    )


def _default_providers() -> dict[str, ProviderConfig]:
    return {"openai": ProviderConfig()}


def _default_tiers() -> dict[Tier, TierConfig]:
    return {
        "cheap": TierConfig(provider="openai", model="gpt-5-mini"),
        "premium": TierConfig(provider="openai", model="gpt-5.5"),
    }


class Settings(_Section):
    """Everything the server can be told. The same keys in TOML and in LSP settings."""

    version: int = Field(default=CONFIG_SCHEMA_VERSION, ge=1)
    providers: dict[str, ProviderConfig] = Field(default_factory=_default_providers)
    tiers: dict[Tier, TierConfig] = Field(default_factory=_default_tiers)
    routing: RoutingConfig = Field(default_factory=RoutingConfig)
    cache: CacheConfig = Field(default_factory=CacheConfig)
    privacy: PrivacyConfig = Field(default_factory=PrivacyConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    limits: dict[LimitKey, KindLimits] = Field(default_factory=_default_limits)
    _roots: tuple[str, ...] = PrivateAttr(default=())

    @field_validator("version")
    @classmethod
    def _known_version(cls, value: int) -> int:
        if value > CONFIG_SCHEMA_VERSION:
            raise ValueError(
                f"this mmx-lsp reads configuration version {CONFIG_SCHEMA_VERSION}; "
                f"upgrade mmx-lsp to read version {value}"
            )
        return value

    @model_validator(mode="after")
    def _tiers_complete(self) -> Settings:
        for name in TIERS:
            if name not in self.tiers:
                raise ValueError(f"tier {name!r} is missing: both 'cheap' and 'premium' are needed")
        for name, tier in self.tiers.items():
            if tier.provider not in self.providers:
                known = ", ".join(sorted(self.providers)) or "none"
                raise ValueError(
                    f"tiers.{name}.provider names {tier.provider!r}, which is not configured "
                    f"(providers: {known})"
                )
        defaults = _default_limits()
        for key in LIMIT_KEYS:
            if key not in self.limits:
                self.limits[key] = defaults[key]
        return self

    @property
    def roots(self) -> tuple[str, ...]:
        """The workspace folders these settings apply to (path globs are relative to them)."""
        return self._roots

    def in_workspace(self, roots: Iterable[str | Path]) -> Settings:
        """These settings for a workspace with these folders."""
        copy = self.model_copy()
        copy._roots = tuple(str(root) for root in roots)
        return copy

    def is_excluded(self, path: str) -> bool:
        """True when a document's path matches `privacy.exclude` (see `globs`)."""
        return globs.matches(path, self.privacy.exclude, self._roots)


# --------------------------------------------------------------------------- loading & merging


@dataclass(frozen=True)
class ConfigIssue:
    """A problem with one source: an error (the source is not applied) or a warning."""

    source: str
    key: str
    message: str
    severity: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        where = f"{self.key}: " if self.key else ""
        return f"mmx config ({self.source}): {where}{self.message}"


@dataclass(frozen=True)
class Source:
    name: str  # a file path, "initializationOptions", "settings" or "defaults"
    data: Mapping[str, Any]


@dataclass
class Loaded:
    settings: Settings
    issues: list[ConfigIssue] = field(default_factory=list)
    origin: dict[str, str] = field(default_factory=dict)  # dotted key -> source name


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterable[str]:
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            yield from _leaves(value, dotted + ".")
        else:
            yield dotted


def _dotted(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        elif item in {"function-after[_tiers_complete()]"}:
            continue
        else:
            parts.append(("." if parts else "") + str(item))
    return "".join(parts)


def _unknown_keys(model: BaseModel, prefix: str = "") -> list[str]:
    found = [f"{prefix}{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        children: Iterable[tuple[str, Any]]
        if isinstance(value, BaseModel):
            children = [(f"{prefix}{name}.", value)]
        elif isinstance(value, dict):
            children = [(f"{prefix}{name}.{k}.", v) for k, v in value.items()]
        elif isinstance(value, list):
            children = [(f"{prefix}{name}[{i}].", v) for i, v in enumerate(value)]
        else:
            children = []
        for child_prefix, child in children:
            if isinstance(child, BaseModel):
                found.extend(_unknown_keys(child, child_prefix))
    return found


def _strip(data: Any, dotted_keys: set[str], prefix: str = "") -> Any:
    """Remove unknown keys (by dotted path) so they can never reach the rest of the server."""
    if isinstance(data, Mapping):
        out = {}
        for key, value in data.items():
            path = f"{prefix}{key}"
            if path in dotted_keys:
                continue
            out[key] = _strip(value, dotted_keys, path + ".")
        return out
    if isinstance(data, list):
        return [_strip(v, dotted_keys, f"{prefix[:-1]}[{i}].") for i, v in enumerate(data)]
    return data


def _describe(error: Mapping[str, Any]) -> str:
    message = str(error.get("msg", "invalid value"))
    message = message.removeprefix("Value error, ")
    if error.get("type") in {"missing"}:
        return "is required"
    given = error.get("input")
    if error.get("type") not in {"model_type", "dict_type"} and not isinstance(given, Mapping):
        return f"{message} (got {given!r})"
    return message


def validate(
    raw: Mapping[str, Any], source: str
) -> tuple[Settings | None, dict[str, Any], list[ConfigIssue]]:
    """Validate one merged dictionary; unknown keys become warnings and are dropped.

    Returns the settings (None when invalid), the data without unknown keys, and the issues.
    """
    issues: list[ConfigIssue] = []
    data = {k: v for k, v in raw.items() if k not in CLIENT_KEYS}
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            issues.append(ConfigIssue(source, _dotted(tuple(error["loc"])), _describe(error)))
        return None, data, issues
    unknown = _unknown_keys(settings)
    if unknown:
        for key in unknown:
            hint = (
                "API keys never go in configuration; name the environment variable with api_key_env"
                if key.rsplit(".", 1)[-1].lower() in {"api_key", "apikey", "key", "token"}
                else "unknown key, ignored"
            )
            issues.append(ConfigIssue(source, key, hint, "warning"))
        data = _strip(data, set(unknown))
        settings = Settings.model_validate(data)
    return settings, data, issues


def load(sources: Iterable[Source]) -> Loaded:
    """Merge sources in order; a source that makes the settings invalid is not applied."""
    settings = Settings()
    raw: dict[str, Any] = settings.model_dump(mode="json", exclude_none=True)
    origin: dict[str, str] = {}
    issues: list[ConfigIssue] = []
    for source in sources:
        if not isinstance(source.data, Mapping):
            issues.append(ConfigIssue(source.name, "", "expected a table of settings"))
            continue
        validated, cleaned, found = validate(deep_merge(raw, source.data), source.name)
        issues.extend(found)
        if validated is None:
            continue
        raw, settings = cleaned, validated
        for key in _leaves({k: v for k, v in source.data.items() if k not in CLIENT_KEYS}):
            origin[key] = source.name
    for name, provider in settings.providers.items():
        if looks_like_key(provider.api_key_env):
            key = f"providers.{name}.api_key_env"
            issues.append(
                ConfigIssue(
                    origin.get(key, "defaults"),
                    key,
                    f"{KEY_IN_KEY_ENV}; put the key in an environment variable and name that "
                    "variable here (the value is not shown, and the provider is not called)",
                    "warning",
                )
            )
    return Loaded(settings, issues, origin)


def read_toml(path: Path) -> tuple[dict[str, Any] | None, ConfigIssue | None]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle), None
    except FileNotFoundError:
        return None, None
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return None, ConfigIssue(str(path), "", f"cannot read TOML: {exc}")


def user_config_path() -> Path:
    import platformdirs

    return Path(platformdirs.user_config_dir("mmx", appauthor=False)) / "config.toml"


def file_sources(workspace_roots: Iterable[Path]) -> tuple[list[Source], list[ConfigIssue]]:
    """The user file, then each workspace's `mmx.toml` or `[tool.mmx]` in `pyproject.toml`."""
    sources: list[Source] = []
    issues: list[ConfigIssue] = []
    candidates = [user_config_path()]
    for root in workspace_roots:
        candidates.append(root / "mmx.toml")
    for path in candidates:
        data, issue = read_toml(path)
        if issue:
            issues.append(issue)
        if data is not None:
            sources.append(Source(str(path), data))
    for root in workspace_roots:
        if (root / "mmx.toml").exists():
            continue
        data, issue = read_toml(root / "pyproject.toml")
        if issue:
            issues.append(issue)
        section = (data or {}).get("tool", {}).get("mmx")
        if isinstance(section, Mapping):
            sources.append(Source(f"{root / 'pyproject.toml'} [tool.mmx]", section))
    return sources, issues


def load_workspace(root: Path) -> Loaded:
    """The settings the command line uses: built-ins, the user file and the workspace's own
    file, with every issue found in reading them."""
    sources, issues = file_sources([root])
    loaded = load(sources)
    return Loaded(loaded.settings.in_workspace([root]), issues + loaded.issues, loaded.origin)


def effective_items(loaded: Loaded) -> list[tuple[str, Any, str]]:
    """(dotted key, value, where it came from) for every leaf of the effective settings."""
    dumped = loaded.settings.model_dump(mode="json")
    rows: list[tuple[str, Any, str]] = []

    def walk(value: Any, prefix: str) -> None:
        if isinstance(value, dict) and value:
            for key, child in value.items():
                walk(child, f"{prefix}.{key}" if prefix else key)
            return
        where = loaded.origin.get(prefix)
        if where is None:
            # A leaf below a key a source set as a whole (a list, a new provider …).
            parents = [k for k in loaded.origin if prefix.startswith(k + ".")]
            where = loaded.origin[max(parents, key=len)] if parents else "default"
        if prefix.endswith(".api_key_env") and looks_like_key(value):
            value = f"[not shown: {KEY_IN_KEY_ENV}]"
        rows.append((prefix, value, where))

    walk(dumped, "")
    return rows
