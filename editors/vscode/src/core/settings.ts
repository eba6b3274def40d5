/** Pure: from the `mmx.*` settings to what the server receives, and how it is started. */

/** The client-only section: how the extension finds and starts the server. */
export interface ServerLaunchSettings {
  path: string;
  python: string;
  maxRestarts: number;
}

/** The section that belongs to the client; the server ignores it, so it is never sent. */
export const CLIENT_SECTION = "server";

/**
 * Builds the nested settings object sent to the server (initializationOptions,
 * `workspace/didChangeConfiguration` and `workspace/configuration`) from dotted keys under
 * `mmx.` and their explicitly set values. Keys left unset are absent, so the server's own
 * defaults and its config files (user and workspace `mmx.toml`) are not overridden by the
 * defaults VS Code shows; the client-only `server` section is dropped.
 */
export function buildServerSettings(entries: Iterable<[string, unknown]>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [fullKey, value] of entries) {
    if (value === undefined) continue;
    const key = fullKey.startsWith("mmx.") ? fullKey.slice(4) : fullKey;
    const path = key.split(".");
    if (path[0] === CLIENT_SECTION || path.some((p) => p === "")) continue;
    let node = out;
    for (const part of path.slice(0, -1)) {
      const next = node[part];
      if (typeof next !== "object" || next === null || Array.isArray(next)) node[part] = {};
      node = node[part] as Record<string, unknown>;
    }
    node[path[path.length - 1]] = value;
  }
  return out;
}

/** The value a setting has where it is set most specifically, or undefined when unset. */
export function explicitValue<T>(inspected: {
  globalValue?: T;
  workspaceValue?: T;
  workspaceFolderValue?: T;
  globalLanguageValue?: T;
  workspaceLanguageValue?: T;
  workspaceFolderLanguageValue?: T;
} | undefined): T | undefined {
  if (inspected === undefined) return undefined;
  return (
    inspected.workspaceFolderLanguageValue ??
    inspected.workspaceLanguageValue ??
    inspected.globalLanguageValue ??
    inspected.workspaceFolderValue ??
    inspected.workspaceValue ??
    inspected.globalValue
  );
}

export type ServerCommand =
  | { ok: true; command: string; args: string[]; source: "server.path" | "server.python" | "PATH" }
  | { ok: false; reason: string };

/**
 * Decides how to start the server: `mmx.server.path` (an `mmx-lsp` executable) first, then
 * `mmx.server.python` (`python -m mmx_lsp`), else `mmx-lsp` found on PATH.
 * `which` resolves a command name or path to an executable file, or returns undefined.
 */
export function resolveServerCommand(
  s: Pick<ServerLaunchSettings, "path" | "python">,
  which: (cmd: string) => string | undefined,
): ServerCommand {
  const path = s.path.trim();
  const python = s.python.trim();
  if (path !== "") {
    const found = which(path);
    if (found === undefined)
      return { ok: false, reason: `mmx.server.path is set to "${path}", but no executable file is there.` };
    return { ok: true, command: found, args: [], source: "server.path" };
  }
  if (python !== "") {
    const found = which(python);
    if (found === undefined)
      return { ok: false, reason: `mmx.server.python is set to "${python}", but no such Python interpreter was found.` };
    return { ok: true, command: found, args: ["-m", "mmx_lsp"], source: "server.python" };
  }
  const found = which("mmx-lsp");
  if (found === undefined)
    return {
      ok: false,
      reason: "The mmx-lsp language server was not found on PATH, and neither mmx.server.path nor mmx.server.python is set.",
    };
  return { ok: true, command: found, args: [], source: "PATH" };
}

/** Environment variable names that hold API keys, from the providers' `api_key_env`. */
export function apiKeyEnvNames(settings: Record<string, unknown>): string[] {
  const names = new Set<string>();
  const providers = settings.providers;
  if (typeof providers === "object" && providers !== null) {
    for (const p of Object.values(providers as Record<string, unknown>)) {
      if (typeof p !== "object" || p === null) continue;
      const env = (p as Record<string, unknown>).api_key_env;
      if (typeof env === "string" && isEnvName(env)) names.add(env);
    }
  }
  return [...names].sort();
}

/** A plausible environment variable name (what `mmx: Set API key` accepts). */
export function isEnvName(name: string): boolean {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(name);
}

/**
 * Bounded restarts: a crash is allowed a restart while fewer than `max` crashes happened
 * within `windowMs` before it.
 */
export class RestartBudget {
  private crashes: number[] = [];
  constructor(
    private readonly max: number,
    private readonly windowMs = 3 * 60 * 1000,
  ) {}

  /** Records a crash at `now`; returns the restart number (1-based), or undefined when exhausted. */
  crash(now: number): number | undefined {
    this.crashes = this.crashes.filter((t) => now - t < this.windowMs);
    this.crashes.push(now);
    return this.crashes.length <= this.max ? this.crashes.length : undefined;
  }

  reset(): void {
    this.crashes = [];
  }

  get limit(): number {
    return this.max;
  }
}
