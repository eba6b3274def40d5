/** The status bar item: the last request's tier, model and cost, or the server's state. */
import * as vscode from "vscode";
import { Health, healthMarkdown, healthSeverity, healthText } from "./core/health";
import { MmxStatus, statusText, statusTooltip } from "./core/status";

export class StatusBar implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private last: MmxStatus | undefined;
  private health: Health | undefined;

  constructor() {
    this.item = vscode.window.createStatusBarItem("mmx.status", vscode.StatusBarAlignment.Right, 100);
    this.item.name = "mmx";
    this.item.command = "mmx.chooseTier";
    this.state("$(sync~spin) mmx · starting", "Starting the mmx-lsp server…");
    this.item.show();
  }

  /** Shows a server state (starting, ready, restarting, stopped). */
  state(text: string, tooltip: string, severity?: "warning" | "error"): void {
    this.item.text = text;
    this.item.tooltip = new vscode.MarkdownString(`**mmx** — ${tooltip}\n\nClick to set the tier or open stats.`, true);
    this.item.backgroundColor =
      severity === undefined ? undefined : new vscode.ThemeColor(`statusBarItem.${severity}Background`);
  }

  /** Forgets the last request and endpoint check (a fresh server start: a new session). */
  reset(): void {
    this.last = undefined;
    this.health = undefined;
  }

  /** Back to the last request's status, or "ready" when there was none. */
  ready(): void {
    if (this.last !== undefined) this.show(this.last);
    else if (this.health !== undefined && healthSeverity(this.health) !== undefined) this.endpoints(this.health);
    else this.state("mmx · ready", "the server is running; no request routed yet.");
  }

  /** The result of an endpoint check: each tier's state, in the item when one needs attention. */
  endpoints(health: Health): void {
    this.health = health;
    const severity = healthSeverity(health);
    if (severity === undefined) {
      if (this.last === undefined) this.state("mmx · ready", `the server is running; endpoints: ${healthText(health)}.`);
      return;
    }
    const icon = severity === "error" ? "$(error)" : "$(warning)";
    this.item.text = `${icon} mmx · ${healthText(health)}`;
    this.item.tooltip = new vscode.MarkdownString(
      `${healthMarkdown(health)}\nRun **mmx: Check endpoints** to check again.`,
      true,
    );
    this.item.backgroundColor = new vscode.ThemeColor(`statusBarItem.${severity}Background`);
  }

  show(status: MmxStatus): void {
    this.last = status;
    this.item.text = statusText(status);
    const tooltip = new vscode.MarkdownString(statusTooltip(status), true);
    this.item.tooltip = tooltip;
    this.item.backgroundColor =
      status.error === null ? undefined : new vscode.ThemeColor("statusBarItem.warningBackground");
  }

  /** A status the server sent that could not be read: say so, keep the editor usable. */
  malformed(problem: string): void {
    this.state("$(warning) mmx · malformed status", `the server sent a status that could not be read: ${problem}. See the mmx log.`, "warning");
  }

  dispose(): void {
    this.item.dispose();
  }
}
