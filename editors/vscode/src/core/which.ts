/** Finds an executable: a path (with `~` and `${workspaceFolder}` expanded) or a name on PATH. */
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

function isExecutableFile(p: string): boolean {
  try {
    if (!fs.statSync(p).isFile()) return false;
    fs.accessSync(p, process.platform === "win32" ? fs.constants.F_OK : fs.constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

/** Expands a leading `~` and `${workspaceFolder}` (when a folder is open). */
export function expandPath(p: string, workspaceFolder: string | undefined): string {
  let out = p;
  if (workspaceFolder !== undefined) out = out.split("${workspaceFolder}").join(workspaceFolder);
  if (out === "~" || out.startsWith("~/")) out = path.join(os.homedir(), out.slice(1));
  return out;
}

/**
 * Resolves `cmd` to an absolute executable path: a command with a path separator is checked
 * where it is (relative to `workspaceFolder` when relative), a bare name is looked up on `envPath`.
 */
export function which(cmd: string, envPath: string | undefined, workspaceFolder?: string): string | undefined {
  const expanded = expandPath(cmd, workspaceFolder);
  if (expanded.includes("/") || expanded.includes(path.sep)) {
    const abs = path.isAbsolute(expanded) ? expanded : path.resolve(workspaceFolder ?? process.cwd(), expanded);
    return isExecutableFile(abs) ? abs : undefined;
  }
  const exts = process.platform === "win32" ? ["", ".exe", ".cmd", ".bat"] : [""];
  for (const dir of (envPath ?? "").split(path.delimiter)) {
    if (dir === "") continue;
    for (const ext of exts) {
      const candidate = path.join(dir, expanded + ext);
      if (isExecutableFile(candidate)) return candidate;
    }
  }
  return undefined;
}
