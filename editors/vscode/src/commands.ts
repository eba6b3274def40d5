/** The extension's commands. Client commands are named apart from the server's
 * (`mmx.setTier`, `mmx.explain`, `mmx.stats`), which vscode-languageclient registers itself. */
import * as vscode from "vscode";
import { healthMarkdown } from "./core/health";
import { decisionMarkdown, statsMarkdown, tierChoices } from "./core/markdown";
import { apiKeyEnvNames, isEnvName } from "./core/settings";
import { log } from "./log";
import { showMarkdown } from "./panel";
import { ApiKeys } from "./secrets";
import { ServerManager } from "./server";
import { serverSettings } from "./settings";

interface TierPick extends vscode.QuickPickItem {
  choice: ReturnType<typeof tierChoices>[number];
}

async function chooseTier(server: ServerManager): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  const items: TierPick[] = tierChoices(editor !== undefined).map((choice) =>
    choice.action.kind === "separator"
      ? { label: "", kind: vscode.QuickPickItemKind.Separator, choice }
      : { label: choice.label, description: choice.description, choice },
  );
  const picked = await vscode.window.showQuickPick(items, { title: "mmx: tier", placeHolder: "Which tier answers?" });
  if (picked === undefined) return;
  const action = picked.choice.action;
  if (action.kind === "command") {
    await vscode.commands.executeCommand(action.command);
  } else if (action.kind === "setTier") {
    const args: Record<string, unknown> = { tier: action.tier, scope: action.scope };
    if (action.scope === "document" && editor !== undefined) args.uri = editor.document.uri.toString();
    const result = await server.executeCommand("mmx.setTier", args);
    if (result !== undefined) {
      log().info(`Tier override: ${JSON.stringify(result)}`);
      vscode.window.setStatusBarMessage(`mmx: ${picked.label.replace(/^\$\([^)]*\)\s*/, "")}`, 4000);
    }
  }
}

async function showStats(server: ServerManager): Promise<void> {
  const stats = await server.executeCommand("mmx.stats", {});
  if (stats === undefined) return;
  await showMarkdown("stats", "mmx: stats", statsMarkdown(stats));
}

async function checkEndpoints(server: ServerManager): Promise<void> {
  const health = await vscode.window.withProgress(
    { location: vscode.ProgressLocation.Window, title: "mmx: checking the endpoints" },
    () => server.checkEndpoints(true),
  );
  if (health === undefined) return;
  await showMarkdown("endpoints", "mmx: endpoints", healthMarkdown(health));
}

async function explainRouting(server: ServerManager): Promise<void> {
  const editor = vscode.window.activeTextEditor;
  if (editor === undefined) {
    void vscode.window.showInformationMessage("mmx: open a file and put the cursor where a request would be made.");
    return;
  }
  const uri = editor.document.uri.toString();
  const sel = editor.selection;
  const args: Record<string, unknown> = sel.isEmpty
    ? { uri, position: { line: sel.active.line, character: sel.active.character } }
    : {
        uri,
        range: {
          start: { line: sel.start.line, character: sel.start.character },
          end: { line: sel.end.line, character: sel.end.character },
        },
      };
  const decision = await server.executeCommand("mmx.explain", args);
  if (decision === undefined) return;
  await showMarkdown("routing", "mmx: routing", decisionMarkdown(decision));
}

async function setApiKey(context: vscode.ExtensionContext, keys: ApiKeys, server: ServerManager): Promise<void> {
  const names = new Set([...apiKeyEnvNames(serverSettings(context)), ...keys.names(), "OPENAI_API_KEY"]);
  const other = "$(edit) Another variable…";
  const picks = [...names].sort().map((n) => ({ label: n, description: keys.names().includes(n) ? "stored" : "" }));
  const picked = await vscode.window.showQuickPick([...picks, { label: other, description: "" }], {
    title: "mmx: Set API key",
    placeHolder: "Which provider's api_key_env?",
  });
  if (picked === undefined) return;
  let envName = picked.label;
  if (envName === other) {
    const typed = await vscode.window.showInputBox({
      title: "mmx: Set API key",
      prompt: "Name of the environment variable (a provider's api_key_env)",
      validateInput: (v) => (isEnvName(v) ? undefined : "Letters, digits and _ only, not starting with a digit"),
    });
    if (typed === undefined) return;
    envName = typed;
  }
  const key = await vscode.window.showInputBox({
    title: `mmx: API key for ${envName}`,
    prompt: "Stored in VS Code's secret storage and given to the server as this environment variable. Empty: remove it.",
    password: true,
    ignoreFocusOut: true,
  });
  if (key === undefined) return;
  if (key.trim() === "") {
    await keys.delete(envName);
    log().info(`API key for ${envName} removed from secret storage.`);
  } else {
    await keys.set(envName, key.trim());
    log().info(`API key for ${envName} stored in secret storage.`);
  }
  await server.restart();
}

export function registerCommands(context: vscode.ExtensionContext, server: ServerManager, keys: ApiKeys): void {
  const guard =
    (name: string, fn: () => Promise<void>) =>
    async (): Promise<void> => {
      try {
        await fn();
      } catch (err) {
        const message = err instanceof Error ? err.message : String(err);
        log().error(`${name} failed: ${message}`);
        void vscode.window.showErrorMessage(`mmx: ${name} failed: ${message}`);
      }
    };
  context.subscriptions.push(
    vscode.commands.registerCommand("mmx.chooseTier", guard("set tier", () => chooseTier(server))),
    vscode.commands.registerCommand("mmx.showStats", guard("show stats", () => showStats(server))),
    vscode.commands.registerCommand("mmx.explainRouting", guard("explain routing", () => explainRouting(server))),
    vscode.commands.registerCommand("mmx.restart", guard("restart", () => server.restart())),
    vscode.commands.registerCommand("mmx.checkEndpoints", guard("check endpoints", () => checkEndpoints(server))),
    vscode.commands.registerCommand("mmx.showLog", () => log().show()),
    vscode.commands.registerCommand("mmx.setApiKey", guard("set API key", () => setApiKey(context, keys, server))),
  );
}
