/** Starts, stops and restarts the language client; bounded restarts after a crash. */
import * as vscode from "vscode";
import {
  CloseAction,
  CloseHandlerResult,
  DidChangeConfigurationNotification,
  ErrorAction,
  ErrorHandlerResult,
  ExecuteCommandRequest,
  LanguageClient,
  LanguageClientOptions,
  MessageType,
  ServerOptions,
  ShowMessageNotification,
  State,
  TransportKind,
} from "vscode-languageclient/node";
import { Health, healthText, parseHealth } from "./core/health";
import { QuietMessages } from "./core/quiet";
import { RestartBudget, resolveServerCommand } from "./core/settings";
import { parseStatus } from "./core/status";
import { which } from "./core/which";
import { log } from "./log";
import { showMarkdown } from "./panel";
import { ApiKeys } from "./secrets";
import { launchSettings, SECTION, serverSettings } from "./settings";
import { StatusBar } from "./statusBar";

/** The languages the server has grammars for. */
export const LANGUAGES = [
  "python",
  "javascript",
  "javascriptreact",
  "typescript",
  "typescriptreact",
  "go",
  "rust",
  "java",
  "c",
  "cpp",
];

const INSTALL_HELP = `# Installing the mmx-lsp server

The extension starts the **mmx-lsp** language server. Install it with pip, in the Python
environment of your choice:

\`\`\`sh
pip install mmx-lsp          # or, from a checkout of the repository: pip install -e .
\`\`\`

Then either make sure \`mmx-lsp\` is on the \`PATH\` VS Code was started with, or set one of:

- \`mmx.server.path\`: the full path of the \`mmx-lsp\` executable, e.g. \`~/.venvs/mmx/bin/mmx-lsp\`;
- \`mmx.server.python\`: a Python interpreter that has it installed; the server is started as
  \`python -m mmx_lsp\`.

Run **mmx: Restart server** afterwards (changing either setting restarts it too).
`;

/**
 * A language client that leaves start-up and connection failures to ServerManager, which
 * reports them once (status bar, one message with actions) instead of a pop-up per attempt.
 */
class MmxLanguageClient extends LanguageClient {
  override error(message: string, data?: unknown, showNotification: boolean | "force" = true): void {
    super.error(message, data, this.state === State.Running ? showNotification : false);
  }
}

/** How long a start or restart waits for the server's initialize answer before moving on. */
const START_WAIT_MS = 20_000;
/** How long a stopping server gets to shut down (and flush its metrics) before it is killed. */
const STOP_WAIT_MS = 5_000;

function workspaceFolder(): string | undefined {
  return vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
}

export class ServerManager implements vscode.Disposable {
  private client: LanguageClient | undefined;
  /** Bumped on every start, so callbacks of an older client are ignored. */
  private generation = 0;
  private budget = new RestartBudget(3);
  private restartTimer: NodeJS.Timeout | undefined;
  /** Starts and stops run one after another, so two restarts never leave two servers. */
  private queue: Promise<void> = Promise.resolve();
  /** The server's messages: at most one per kind of failure per minute, never modal. */
  private readonly quiet = new QuietMessages();

  constructor(
    private readonly context: vscode.ExtensionContext,
    private readonly statusBar: StatusBar,
    private readonly apiKeys: ApiKeys,
  ) {}

  /** The running client, or undefined (and a message) when the server is not running. */
  runningClient(): LanguageClient | undefined {
    if (this.client !== undefined && this.client.state === State.Running) return this.client;
    void vscode.window.showWarningMessage("The mmx-lsp server is not running.", "Restart", "Show log").then((choice) => {
      if (choice === "Restart") void this.restart();
      if (choice === "Show log") log().show();
    });
    return undefined;
  }

  /** Runs a server command (`workspace/executeCommand`) with one JSON object argument. */
  async executeCommand(command: string, args: Record<string, unknown>): Promise<unknown> {
    const client = this.runningClient();
    if (client === undefined) return undefined;
    return client.sendRequest(ExecuteCommandRequest.type, { command, arguments: [args] });
  }

  /**
   * Asks the server to check each tier's endpoint (`mmx.health`); the status bar shows the
   * result. `probeFim` also probes fill-in-the-middle (one completion of one token per
   * completions tier); `quiet` runs without a message when the server is not running.
   */
  async checkEndpoints(probeFim: boolean, quiet = false): Promise<Health | undefined> {
    const client = quiet ? this.client : this.runningClient();
    if (client === undefined || client.state !== State.Running) return undefined;
    const gen = this.generation;
    const raw: unknown = await client.sendRequest(ExecuteCommandRequest.type, {
      command: "mmx.health",
      arguments: [{ probe_fim: probeFim }],
    });
    const health = parseHealth(raw);
    if (health === undefined) {
      log().warn(`mmx.health gave no answer the extension can read: ${JSON.stringify(raw)?.slice(0, 300)}`);
      return undefined;
    }
    log().info(`Endpoints: ${healthText(health)}`);
    for (const t of health.tiers) if (t.problem !== null) log().warn(`${t.tier} tier: ${t.problem}`);
    if (gen === this.generation) this.statusBar.endpoints(health);
    return health;
  }

  private serialized(step: () => Promise<void>): Promise<void> {
    this.queue = this.queue.then(step).catch((err: unknown) => {
      log().error(`mmx: ${err instanceof Error ? err.message : String(err)}`);
    });
    return this.queue;
  }

  /** A fresh start (user action or settings change): the crash count starts over. */
  restart(): Promise<void> {
    return this.serialized(async () => {
      await this.stopClient();
      this.statusBar.reset();
      this.budget = new RestartBudget(launchSettings().maxRestarts);
      await this.startClient();
    });
  }

  start(): Promise<void> {
    return this.restart();
  }

  /** Restarts shortly after `mmx.server.*` settings change (edits come in bursts). */
  restartSoon(delayMs = 1500): void {
    clearTimeout(this.restartTimer);
    this.restartTimer = setTimeout(() => void this.restart(), delayMs);
  }

  /** Pushes the `mmx` settings to the running server. */
  async pushSettings(): Promise<void> {
    const client = this.client;
    if (client === undefined || client.state !== State.Running) return;
    await client.sendNotification(DidChangeConfigurationNotification.type, {
      settings: { [SECTION]: serverSettings(this.context) },
    });
  }

  private async startClient(): Promise<void> {
    const gen = ++this.generation;
    const launch = launchSettings();
    const cmd = resolveServerCommand(launch, (c) => which(c, process.env.PATH, workspaceFolder()));
    if (!cmd.ok) {
      log().error(cmd.reason);
      this.statusBar.state("$(error) mmx · server not found", cmd.reason, "error");
      void vscode.window.showErrorMessage(cmd.reason, "How to install", "Open settings").then((choice) => {
        if (choice === "How to install") void showMarkdown("install", "mmx: install the server", INSTALL_HELP);
        if (choice === "Open settings") void vscode.commands.executeCommand("workbench.action.openSettings", "mmx.server");
      });
      return;
    }
    const keyEnv = await this.apiKeys.environment();
    if (gen !== this.generation) return; // superseded while the keys were read
    const keyNames = Object.keys(keyEnv);
    log().info(
      `Starting ${[cmd.command, ...cmd.args].join(" ")} (from ${cmd.source})` +
        (keyNames.length > 0 ? `; API keys from SecretStorage: ${keyNames.join(", ")}` : ""),
    );
    this.statusBar.state("$(sync~spin) mmx · starting", "starting the mmx-lsp server…");

    const serverOptions: ServerOptions = {
      command: cmd.command,
      args: cmd.args,
      transport: TransportKind.stdio,
      // For an executable the client passes `env` to spawn as the whole environment.
      options: { env: { ...process.env, ...keyEnv }, cwd: workspaceFolder() },
    };
    const clientOptions: LanguageClientOptions = {
      documentSelector: LANGUAGES.flatMap((language) => [
        { scheme: "file", language },
        { scheme: "untitled", language },
      ]),
      outputChannel: log(),
      initializationOptions: () => serverSettings(this.context),
      // A failed initialize is a crash like any other: ServerManager decides about restarts.
      initializationFailedHandler: () => false,
      errorHandler: {
        error: (_error, _message, count): ErrorHandlerResult => ({
          action: (count ?? 0) <= 3 ? ErrorAction.Continue : ErrorAction.Shutdown,
          handled: true,
        }),
        closed: (): CloseHandlerResult => {
          this.onCrash(gen);
          return { action: CloseAction.DoNotRestart, handled: true };
        },
      },
      middleware: {
        workspace: {
          // The server pulls section `mmx`: answer with the explicit settings, as pushed.
          configuration: async (params, token, next) => {
            const result = await next(params, token);
            if (!Array.isArray(result)) return result;
            return params.items.map((item, i) => {
              const section = item.section ?? "";
              if (section !== SECTION && !section.startsWith(`${SECTION}.`)) return result[i] as unknown;
              const scope = item.scopeUri === undefined ? undefined : vscode.Uri.parse(item.scopeUri);
              let value: unknown = serverSettings(this.context, scope);
              for (const part of section.split(".").slice(1))
                value = typeof value === "object" && value !== null ? (value as Record<string, unknown>)[part] : undefined;
              return value ?? null;
            });
          },
        },
      },
    };

    const client = new MmxLanguageClient("mmx", "mmx", serverOptions, clientOptions);
    this.client = client;
    // Tell the server that this client shows `mmx/explanation` itself (no showMessage copy).
    client.registerFeature({
      fillClientCapabilities: (capabilities) => {
        capabilities.experimental = { ...(capabilities.experimental as object | undefined), mmx: { explanation: true } };
      },
      initialize: () => undefined,
      getState: () => ({ kind: "static" }),
      clear: () => undefined,
    });
    client.onNotification("mmx/status", (raw: unknown) => {
      if (gen !== this.generation) return;
      const parsed = parseStatus(raw);
      if (parsed.ok) this.statusBar.show(parsed.value);
      else {
        log().warn(`Malformed mmx/status ignored (${parsed.error}): ${JSON.stringify(raw)?.slice(0, 500)}`);
        this.statusBar.malformed(parsed.error);
      }
    });
    // Failures come as window/showMessage: into the log always, as a (non-modal) message at
    // most once a minute per kind, so that a provider that keeps failing never floods typing.
    client.onNotification(ShowMessageNotification.type, (m) => {
      const level = m.type === MessageType.Error ? "error" : m.type === MessageType.Warning ? "warn" : "info";
      log()[level](m.message);
      if (!this.quiet.take(m.message)) return;
      if (m.type === MessageType.Error) void vscode.window.showErrorMessage(m.message);
      else if (m.type === MessageType.Warning) void vscode.window.showWarningMessage(m.message);
      else void vscode.window.showInformationMessage(m.message);
    });
    client.onNotification("mmx/explanation", (raw: unknown) => {
      const markdown = typeof raw === "object" && raw !== null ? (raw as { markdown?: unknown }).markdown : undefined;
      if (typeof markdown !== "string") {
        log().warn("Malformed mmx/explanation ignored: no markdown");
        return;
      }
      void showMarkdown("explanation", "mmx: explanation", markdown);
    });
    client.onDidChangeState((e) => {
      if (gen !== this.generation || e.newState !== State.Running) return;
      this.statusBar.ready();
      // Whether each endpoint answers (no completion is asked for: that is the command's).
      this.checkEndpoints(false, true).catch((err: unknown) =>
        log().warn(`Checking the endpoints failed: ${err instanceof Error ? err.message : String(err)}`),
      );
    });
    const started = client.start().catch((err: unknown) => {
      // A server that dies during startup also reaches `closed`, which counts the crash.
      log().error(`The mmx-lsp server failed to start: ${err instanceof Error ? err.message : String(err)}`);
    });
    // Wait for the start, but not forever: a server stuck in initialize must not block a restart.
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([started, new Promise<void>((resolve) => (timer = setTimeout(resolve, START_WAIT_MS)))]);
    clearTimeout(timer);
  }

  /** The connection closed without `stop()`: restart within the budget, else say so and stop. */
  private onCrash(gen: number): void {
    if (gen !== this.generation) return;
    const n = this.budget.crash(Date.now());
    const max = this.budget.limit;
    if (n !== undefined) {
      log().warn(`The mmx-lsp server exited unexpectedly; restarting (${n}/${max}).`);
      this.statusBar.state(
        `$(sync~spin) mmx · restarting (${n}/${max})`,
        `the server exited unexpectedly; restart ${n} of ${max}.`,
        "warning",
      );
      clearTimeout(this.restartTimer);
      this.restartTimer = setTimeout(() => {
        void this.serialized(async () => {
          if (gen !== this.generation) return;
          const dead = this.client;
          this.client = undefined;
          dead?.dispose().catch(() => undefined);
          await this.startClient();
        });
      }, 500 * n);
      return;
    }
    const crashes = max + 1 === 1 ? "once" : `${max + 1} times`;
    const message = `The mmx-lsp server crashed ${crashes} in 3 minutes and was not restarted${max > 0 ? " again" : ""}.`;
    log().error(message);
    this.statusBar.state("$(error) mmx · stopped", `${message} Run "mmx: Restart server" to try again.`, "error");
    void vscode.window.showErrorMessage(message, "Restart", "Show log").then((choice) => {
      if (choice === "Restart") void this.restart();
      if (choice === "Show log") log().show();
    });
  }

  stop(): Promise<void> {
    return this.serialized(() => this.stopClient());
  }

  private async stopClient(): Promise<void> {
    clearTimeout(this.restartTimer);
    this.generation++;
    const client = this.client;
    this.client = undefined;
    if (client === undefined) return;
    try {
      if (client.state !== State.Stopped) await client.stop(STOP_WAIT_MS);
    } catch (err) {
      log().warn(`Stopping the server: ${err instanceof Error ? err.message : String(err)}`);
    }
    try {
      await client.dispose(STOP_WAIT_MS);
    } catch {
      // Already stopped: nothing left to release.
    }
  }

  dispose(): void {
    void this.stop();
  }
}
