/** Entry point: wires the log, the status bar, the server and the commands together. */
import * as vscode from "vscode";
import { registerCommands } from "./commands";
import { createLog } from "./log";
import { ApiKeys } from "./secrets";
import { ServerManager } from "./server";
import { SECTION } from "./settings";
import { StatusBar } from "./statusBar";

let server: ServerManager | undefined;

export function activate(context: vscode.ExtensionContext): void {
  const log = createLog();
  const statusBar = new StatusBar();
  const keys = new ApiKeys(context);
  server = new ServerManager(context, statusBar, keys);
  const s = server;
  context.subscriptions.push(log, statusBar, s);
  registerCommands(context, s, keys);
  context.subscriptions.push(
    vscode.workspace.onDidChangeConfiguration((e) => {
      if (e.affectsConfiguration(`${SECTION}.server`)) s.restartSoon();
      else if (e.affectsConfiguration(SECTION)) void s.pushSettings();
    }),
  );
  void s.start();
}

export async function deactivate(): Promise<void> {
  await server?.stop();
  server = undefined;
}
