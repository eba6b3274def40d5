/** API keys kept in VS Code's SecretStorage and handed to the server process's environment. */
import * as vscode from "vscode";

const INDEX_KEY = "mmx.apiKeyNames";
const secretKey = (envName: string): string => `mmx.apiKey.${envName}`;

export class ApiKeys {
  constructor(private readonly context: vscode.ExtensionContext) {}

  /** Names of the environment variables that have a stored key (the names are not secret). */
  names(): string[] {
    return this.context.globalState.get<string[]>(INDEX_KEY, []);
  }

  async set(envName: string, key: string): Promise<void> {
    await this.context.secrets.store(secretKey(envName), key);
    const names = new Set(this.names());
    names.add(envName);
    await this.context.globalState.update(INDEX_KEY, [...names].sort());
  }

  async delete(envName: string): Promise<void> {
    await this.context.secrets.delete(secretKey(envName));
    await this.context.globalState.update(
      INDEX_KEY,
      this.names().filter((n) => n !== envName),
    );
  }

  /**
   * The environment additions for the server: each stored key under its variable name. A key
   * stored here wins over the same variable inherited from VS Code's environment.
   */
  async environment(): Promise<Record<string, string>> {
    const env: Record<string, string> = {};
    for (const name of this.names()) {
      const value = await this.context.secrets.get(secretKey(name));
      if (value !== undefined && value !== "") env[name] = value;
    }
    return env;
  }
}
