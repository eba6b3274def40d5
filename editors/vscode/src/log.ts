/** The "mmx" log output channel, shared by the extension and the language client. */
import * as vscode from "vscode";

let channel: vscode.LogOutputChannel | undefined;

export function createLog(): vscode.LogOutputChannel {
  channel ??= vscode.window.createOutputChannel("mmx", { log: true });
  return channel;
}

export function log(): vscode.LogOutputChannel {
  return createLog();
}
