/** One webview panel that shows Markdown rendered by VS Code's own Markdown renderer. */
import * as vscode from "vscode";
import { log } from "./log";

const panels = new Map<string, vscode.WebviewPanel>();

function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

async function render(markdown: string): Promise<string> {
  try {
    const html = await vscode.commands.executeCommand<string>("markdown.api.render", markdown);
    if (typeof html === "string") return html;
  } catch (err) {
    log().warn(`Markdown renderer unavailable, showing plain text: ${String(err)}`);
  }
  return `<pre>${escapeHtml(markdown)}</pre>`;
}

/** Shows `markdown` in the panel named `key`, creating it beside the editor when needed. */
export async function showMarkdown(key: string, title: string, markdown: string): Promise<void> {
  let panel = panels.get(key);
  if (panel === undefined) {
    panel = vscode.window.createWebviewPanel(`mmx.${key}`, title, { viewColumn: vscode.ViewColumn.Beside, preserveFocus: true }, {
      enableScripts: false,
      enableFindWidget: true,
    });
    panels.set(key, panel);
    panel.onDidDispose(() => panels.delete(key));
  } else {
    panel.title = title;
    panel.reveal(undefined, true);
  }
  const body = await render(markdown);
  const csp = `default-src 'none'; style-src ${panel.webview.cspSource} 'unsafe-inline'; img-src ${panel.webview.cspSource} data:;`;
  panel.webview.html = `<!DOCTYPE html>
<html lang="en"><head><meta charset="UTF-8">
<meta http-equiv="Content-Security-Policy" content="${csp}">
<style>
body { font-family: var(--vscode-font-family); font-size: var(--vscode-font-size); color: var(--vscode-foreground); padding: 0 1em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid var(--vscode-panel-border, #8884); padding: 2px 8px; }
code, pre { font-family: var(--vscode-editor-font-family); }
pre { background: var(--vscode-textCodeBlock-background); padding: 0.5em; overflow-x: auto; }
</style></head><body class="mmx-${key}">${body}</body></html>`;
}
