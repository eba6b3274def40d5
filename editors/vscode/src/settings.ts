/** Reads the `mmx.*` settings: the server's section (explicit values only) and the client's. */
import * as vscode from "vscode";
import { buildServerSettings, explicitValue, ServerLaunchSettings } from "./core/settings";

export const SECTION = "mmx";

/** Every `mmx.*` key the extension contributes (package.json), so unset ones can be told apart. */
function contributedKeys(context: vscode.ExtensionContext): string[] {
  const json = context.extension.packageJSON as {
    contributes?: { configuration?: { properties?: Record<string, unknown> } };
  };
  return Object.keys(json.contributes?.configuration?.properties ?? {}).filter((k) => k.startsWith(`${SECTION}.`));
}

/**
 * The settings the server receives: every `mmx.*` value the user set (user, workspace or
 * folder), nested by section, without the client-only `server` section.
 */
export function serverSettings(context: vscode.ExtensionContext, scope?: vscode.ConfigurationScope): Record<string, unknown> {
  const config = vscode.workspace.getConfiguration(SECTION, scope);
  const entries: Array<[string, unknown]> = contributedKeys(context).map((key) => [
    key,
    explicitValue(config.inspect(key.slice(SECTION.length + 1))),
  ]);
  return buildServerSettings(entries);
}

/** The client-only settings that say how the server is started. */
export function launchSettings(): ServerLaunchSettings {
  const config = vscode.workspace.getConfiguration(`${SECTION}.server`);
  const maxRestarts = config.get<number>("maxRestarts", 3);
  return {
    path: config.get<string>("path", ""),
    python: config.get<string>("python", ""),
    maxRestarts: Number.isInteger(maxRestarts) && maxRestarts >= 0 ? maxRestarts : 3,
  };
}
