/** Unit tests of the settings mapping, the server command resolution and bounded restarts. */
import { strict as assert } from "node:assert";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";
import { apiKeyEnvNames, buildServerSettings, explicitValue, resolveServerCommand, RestartBudget } from "../../src/core/settings";
import { which } from "../../src/core/which";

describe("buildServerSettings", () => {
  it("nests dotted keys by section", () => {
    const out = buildServerSettings([
      ["mmx.routing.premium_above", 0.7],
      ["mmx.routing.cascade", false],
      ["mmx.cache.backend", "redis"],
      ["mmx.tiers", { cheap: { provider: "stub", model: "stub-cheap" } }],
    ]);
    assert.deepEqual(out, {
      routing: { premium_above: 0.7, cascade: false },
      cache: { backend: "redis" },
      tiers: { cheap: { provider: "stub", model: "stub-cheap" } },
    });
  });
  it("drops unset keys so the server's defaults and config files apply", () => {
    assert.deepEqual(buildServerSettings([["mmx.routing.premium_above", undefined], ["mmx.privacy.exclude", undefined]]), {});
  });
  it("never sends the client-only server section", () => {
    assert.deepEqual(
      buildServerSettings([
        ["mmx.server.path", "/usr/bin/mmx-lsp"],
        ["mmx.server.maxRestarts", 5],
        ["mmx.cache.url", ""],
      ]),
      { cache: { url: "" } },
    );
  });
  it("keeps null, which means 'no budget'", () => {
    assert.deepEqual(buildServerSettings([["mmx.routing.daily_budget_usd", null]]), { routing: { daily_budget_usd: null } });
  });
});

describe("explicitValue", () => {
  it("is undefined when only the default exists", () => assert.equal(explicitValue({}), undefined));
  it("prefers the folder over the workspace over the user", () => {
    assert.equal(explicitValue({ globalValue: 1, workspaceValue: 2, workspaceFolderValue: 3 }), 3);
    assert.equal(explicitValue({ globalValue: 1, workspaceValue: 2 }), 2);
    assert.equal(explicitValue({ globalValue: 1 }), 1);
  });
});

describe("resolveServerCommand", () => {
  const found = (exe: Record<string, string>) => (c: string) => exe[c];
  it("uses mmx.server.path first", () => {
    const r = resolveServerCommand({ path: "/opt/mmx-lsp", python: "python3" }, found({ "/opt/mmx-lsp": "/opt/mmx-lsp" }));
    assert.deepEqual(r, { ok: true, command: "/opt/mmx-lsp", args: [], source: "server.path" });
  });
  it("runs python -m mmx_lsp with mmx.server.python", () => {
    const r = resolveServerCommand({ path: "", python: "python3" }, found({ python3: "/usr/bin/python3" }));
    assert.deepEqual(r, { ok: true, command: "/usr/bin/python3", args: ["-m", "mmx_lsp"], source: "server.python" });
  });
  it("finds mmx-lsp on PATH by default", () => {
    const r = resolveServerCommand({ path: "", python: "" }, found({ "mmx-lsp": "/usr/local/bin/mmx-lsp" }));
    assert.deepEqual(r, { ok: true, command: "/usr/local/bin/mmx-lsp", args: [], source: "PATH" });
  });
  it("explains a missing server", () => {
    const r = resolveServerCommand({ path: "", python: "" }, found({}));
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /not found on PATH/);
  });
  it("names the setting that points nowhere", () => {
    const r = resolveServerCommand({ path: "/nope/mmx-lsp", python: "" }, found({}));
    assert.equal(r.ok, false);
    if (!r.ok) assert.match(r.reason, /mmx\.server\.path .*\/nope\/mmx-lsp/);
  });
});

describe("which", () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mmx-which-"));
  const exe = path.join(dir, "mmx-lsp");
  fs.writeFileSync(exe, "#!/bin/sh\n", { mode: 0o755 });
  const plain = path.join(dir, "notes.txt");
  fs.writeFileSync(plain, "", { mode: 0o644 });
  it("finds a name on PATH", () => assert.equal(which("mmx-lsp", `/nonexistent${path.delimiter}${dir}`), exe));
  it("accepts an executable path", () => assert.equal(which(exe, ""), exe));
  it("expands ${workspaceFolder}", () => assert.equal(which("${workspaceFolder}/mmx-lsp", "", dir), exe));
  it("rejects a file that is not executable", () => assert.equal(which(plain, ""), undefined));
  it("rejects a directory", () => assert.equal(which(dir, ""), undefined));
  it("rejects a missing name", () => assert.equal(which("no-such-mmx", dir), undefined));
});

describe("apiKeyEnvNames", () => {
  it("collects the providers' api_key_env names", () => {
    const names = apiKeyEnvNames({
      providers: {
        a: { base_url: "x", api_key_env: "OPENAI_API_KEY" },
        b: { api_key_env: "MMX_STUB_KEY" },
        c: { api_key_env: "not a name; rm -rf" },
        d: "junk",
      },
    });
    assert.deepEqual(names, ["MMX_STUB_KEY", "OPENAI_API_KEY"]);
  });
  it("is empty without providers", () => assert.deepEqual(apiKeyEnvNames({}), []));
});

describe("RestartBudget", () => {
  it("allows max restarts, then refuses", () => {
    const b = new RestartBudget(3, 1000);
    assert.deepEqual([b.crash(0), b.crash(1), b.crash(2), b.crash(3)], [1, 2, 3, undefined]);
  });
  it("forgets crashes older than the window", () => {
    const b = new RestartBudget(2, 1000);
    assert.equal(b.crash(0), 1);
    assert.equal(b.crash(10), 2);
    assert.equal(b.crash(2000), 1);
  });
  it("allows none with a zero budget", () => assert.equal(new RestartBudget(0).crash(0), undefined));
});
