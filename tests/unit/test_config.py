"""Configuration: every source in order, clear errors, unknown keys warned, last good kept."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest

from mmx_lsp import config, engine
from mmx_lsp.config import Settings, Source, load
from mmx_lsp.documents import Document
from mmx_lsp.evaluation.tasks import load_task
from mmx_lsp.scoring import Request

README = Path(__file__).resolve().parents[2] / "README.md"


def test_later_sources_override_key_by_key() -> None:
    loaded = load(
        [
            Source("user.toml", {"routing": {"premium_above": 0.7, "cascade": False}}),
            Source("mmx.toml", {"routing": {"premium_above": 0.6}}),
            Source("initializationOptions", {"tiers": {"cheap": {"model": "gpt-4.1-mini"}}}),
        ]
    )
    s = loaded.settings
    assert (s.routing.premium_above, s.routing.cascade) == (0.6, False)
    assert s.tiers["cheap"].model == "gpt-4.1-mini" and s.tiers["cheap"].provider == "openai"
    assert loaded.origin["routing.premium_above"] == "mmx.toml"
    assert loaded.origin["routing.cascade"] == "user.toml"
    assert not loaded.issues


@pytest.mark.parametrize(
    "data, key, words",
    [
        ({"routing": {"premium_above": 1.5}}, "routing.premium_above", "less than or equal to 1"),
        ({"routing": {"premium_above": "high"}}, "routing.premium_above", "valid number"),
        ({"tiers": {"cheap": {"provider": "nowhere"}}}, "", "not configured"),
        ({"cache": {"backend": "floppy"}}, "cache.backend", "'disk', 'redis' or 'off'"),
        (
            {"routing": {"rules": [{"when": {"kind": "poem"}, "tier": "premium"}]}},
            "routing.rules[0].when.kind",
            "",
        ),
        ({"version": 9}, "version", "upgrade mmx-lsp"),
    ],
    ids=["out-of-range", "wrong-type", "unknown-provider", "bad-enum", "bad-rule", "newer-schema"],
)
def test_invalid_source_is_named_with_key_and_reason_and_not_applied(
    data: dict[str, object], key: str, words: str
) -> None:
    loaded = load([Source("a.toml", {"routing": {"premium_above": 0.3}}), Source("b.toml", data)])
    assert loaded.settings.routing.premium_above == 0.3  # the last good settings stay
    errors = [i for i in loaded.issues if i.severity == "error"]
    assert errors and all(i.source == "b.toml" for i in errors)
    assert any(i.key.startswith(key) and words in i.message for i in errors), errors


def test_unknown_keys_warn_by_name_and_the_rest_applies() -> None:
    loaded = load(
        [Source("s", {"routing": {"premium_abov": 0.1, "cascade": False}, "server": {"path": "x"}})]
    )
    assert loaded.settings.routing.cascade is False
    warnings = [str(i) for i in loaded.issues]
    assert warnings == ["mmx config (s): routing.premium_abov: unknown key, ignored"]


def test_an_api_key_in_config_is_refused_and_never_echoed() -> None:
    loaded = load([Source("s", {"providers": {"openai": {"api_key": "sk-live-abcdef123456"}}})])
    text = " ".join(str(i) for i in loaded.issues)
    assert "api_key_env" in text and "sk-live" not in text
    assert "sk-live" not in str(loaded.settings.model_dump())


def test_files_are_read_from_user_dir_workspace_and_pyproject(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    (tmp_path / "cfg" / "mmx").mkdir(parents=True)
    (tmp_path / "cfg" / "mmx" / "config.toml").write_text(
        "[routing]\npremium_above = 0.8\ncascade = false\n"
    )
    ws1, ws2 = tmp_path / "ws1", tmp_path / "ws2"
    ws1.mkdir(), ws2.mkdir()
    (ws1 / "mmx.toml").write_text("[routing]\npremium_above = 0.7\n")
    (ws2 / "pyproject.toml").write_text("[tool.mmx.cache]\nbackend = 'off'\n")
    sources, issues = config.file_sources([ws1, ws2])
    loaded = load(sources)
    assert not issues and not loaded.issues
    assert loaded.settings.routing.premium_above == 0.7
    assert loaded.settings.routing.cascade is False
    assert loaded.settings.cache.backend == "off"
    assert loaded.origin["cache.backend"].endswith("pyproject.toml [tool.mmx]")


def test_broken_toml_is_reported_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    (tmp_path / "mmx.toml").write_text("[routing\n")
    _, issues = config.file_sources([tmp_path])
    assert issues and str(tmp_path / "mmx.toml") in str(issues[0]) and "TOML" in str(issues[0])


def test_privacy_defaults_exclude_secrets() -> None:
    s = Settings()
    for path in (
        "/w/.env",
        "/w/.env.local",
        "/w/certs/server.pem",
        "/home/u/.ssh/config",
        "/w/app/secrets/db.txt",
        "/w/id_rsa.pub",
        "/w/k.key",
    ):
        assert s.is_excluded(path), path
    assert not s.is_excluded("/w/src/environment.py")


def _readme_toml() -> list[str]:
    return re.findall(r"```toml\n(.*?)```", README.read_text(), flags=re.S)


def test_every_settings_example_in_the_readme_loads_without_a_warning(tmp_path: Path) -> None:
    """The README's TOML blocks are settings, except its example of an eval task."""
    blocks = _readme_toml()
    tasks = [b for b in blocks if b.startswith("kind = ")]
    settings = [b for b in blocks if b not in tasks]
    assert len(tasks) == 1 and len(settings) >= 4
    for block in settings:
        loaded = load([Source("README.md", tomllib.loads(block))])
        assert not loaded.issues, (block, loaded.issues)
    (tmp_path / "task.toml").write_text(tasks[0])
    assert load_task(tmp_path / "task.toml").kind == tasks[0].split('"')[1]


def test_the_readmes_rule_sends_a_local_models_code_actions_to_premium() -> None:
    [block] = [b for b in _readme_toml() if '"explain"]' in b]
    settings = load([Source("README.md", tomllib.loads(block))]).settings
    doc = Document.open("file:///w/a.py", "python", 1, "def f(x):\n    return x + 1\n")
    for kind in ("refactor", "fix", "docstring", "explain"):
        assert engine.decide(settings, doc, Request(kind, (0, 0), (1, 16))).tier == "premium"
    assert engine.decide(settings, doc, Request("inline", (1, 16))).tier == "cheap"


def _readme_keys() -> set[str]:
    section = README.read_text().split("## Configuration reference", 1)[1].split("\n## ", 1)[0]
    return set(re.findall(r"^\| `([a-z_.\[\]<>]+)` \|", section, flags=re.M))


def _schema_keys() -> set[str]:
    keys: set[str] = set()

    def walk(model: type, prefix: str) -> None:
        for name, field in model.model_fields.items():  # type: ignore[attr-defined]
            path = f"{prefix}{name}"
            annotation = field.annotation
            inner = getattr(annotation, "__args__", ())
            sub = next(
                (
                    a
                    for a in (annotation, *inner)
                    if isinstance(a, type) and issubclass(a, config._Section)
                ),
                None,
            )
            if name in ("providers", "tiers"):
                sub = config.ProviderConfig if name == "providers" else config.TierConfig
                walk(sub, f"{path}.<name>.")
            elif name == "limits":
                walk(config.KindLimits, f"{path}.<kind>.")
            elif name == "rules":
                walk(config.Rule, f"{path}[].")
            elif sub is not None and sub is not model:
                walk(sub, path + ".")
            else:
                keys.add(path)

    walk(Settings, "")
    return keys


def test_readme_configuration_reference_matches_the_model() -> None:
    assert _readme_keys() == _schema_keys()
