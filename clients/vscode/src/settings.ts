// Settings: which server command to run and which settings the server receives.
// Pure functions over a `get(key)` reader, so they are tested without VS Code.

import * as os from "os";
import * as path from "path";

/** The configuration section shared by the client and the server. */
export const SECTION = "diffusionLsp";

/** Settings the server understands (initializationOptions and workspace/configuration). */
export const SERVER_SETTING_KEYS = [
  "modelPath",
  "device",
  "quantize",
  "blockSize",
  "threshold",
  "maxTokens",
  "latencyBudgetMs",
  "minProbability",
  "tokenHealing",
  "completionCandidates",
  "cacheBudgetMb",
  "cacheDir",
  "cacheDirMaxMb",
  "cacheDirMaxAgeDays",
  "enableCompletion",
  "enableInlineCompletion",
  "enableRepair",
  "nameDiagnostics",
  "logLevel",
] as const;

export type ServerSettingKey = (typeof SERVER_SETTING_KEYS)[number];
export type ServerSettings = Partial<Record<ServerSettingKey, unknown>>;

/** Reads one key of the `diffusionLsp` section (like vscode.WorkspaceConfiguration.get). */
export interface SettingsReader {
  get<T>(key: string): T | undefined;
}

/** How to start the server process. */
export interface ServerCommand {
  command: string;
  args: string[];
  env: Record<string, string>;
  /** Human-readable origin of the command, for error messages. */
  source: "server.command" | "server.pythonPath" | "installed" | "PATH";
}

/**
 * The server settings to send: every known key whose value is set (null, undefined and
 * empty strings mean "use the server's default" and are left out).
 */
export function serverSettings(cfg: SettingsReader): ServerSettings {
  const out: ServerSettings = {};
  for (const key of SERVER_SETTING_KEYS) {
    const value = cfg.get<unknown>(key);
    if (value === null || value === undefined || value === "") {
      continue;
    }
    out[key] = value;
  }
  return out;
}

/** Keeps only the server's keys of a whole `diffusionLsp` section object. */
export function filterServerSection(section: unknown): unknown {
  if (section === null || typeof section !== "object" || Array.isArray(section)) {
    return section;
  }
  const obj = section as Record<string, unknown>;
  return serverSettings({ get: <T>(key: string) => obj[key] as T | undefined });
}

/** Expands a leading `~` and `${workspaceFolder}` / `${userHome}` in one argument. */
export function expandVariables(value: string, workspaceFolder: string | undefined): string {
  let out = value;
  if (out === "~" || out.startsWith("~/")) {
    out = path.join(os.homedir(), out.slice(1));
  }
  out = out.replace(/\$\{userHome\}/g, os.homedir());
  if (workspaceFolder !== undefined) {
    out = out.replace(/\$\{workspaceFolder\}/g, workspaceFolder);
  }
  return out;
}

/**
 * The server command: `server.command` if set, else `<server.pythonPath> -P -m lsp_server`,
 * else `diffusion-lsp serve` found on PATH.
 */
export function resolveServerCommand(
  cfg: SettingsReader,
  workspaceFolder: string | undefined,
  installedPython?: string,
): ServerCommand {
  const env: Record<string, string> = {};
  const envSetting = cfg.get<Record<string, unknown>>("server.env") ?? {};
  for (const [name, value] of Object.entries(envSetting)) {
    if (value !== null && value !== undefined) {
      env[name] = expandVariables(String(value), workspaceFolder);
    }
  }

  const command = (cfg.get<string[]>("server.command") ?? []).filter((part) => part !== "");
  if (command.length > 0) {
    const [exe, ...args] = command.map((part) => expandVariables(part, workspaceFolder));
    return { command: exe, args, env, source: "server.command" };
  }
  const python = (cfg.get<string>("server.pythonPath") ?? "").trim();
  if (python !== "") {
    return {
      command: expandVariables(python, workspaceFolder),
      // -P: the workspace (the working directory) is not put on sys.path, so a
      // msgpack.py or tokenizers.py in the opened project is never imported (Python 3.11+).
      args: ["-P", "-m", "lsp_server"],
      env,
      source: "server.pythonPath",
    };
  }
  if (installedPython !== undefined) {
    // the private environment the extension installed (install.ts)
    return { command: installedPython, args: ["-P", "-m", "lsp_server"], env, source: "installed" };
  }
  return { command: "diffusion-lsp", args: ["serve"], env, source: "PATH" };
}

/** Language ids the client attaches to (default: python). */
export function languages(cfg: SettingsReader): string[] {
  const langs = (cfg.get<string[]>("languages") ?? []).filter((l) => l !== "");
  return langs.length > 0 ? langs : ["python"];
}

/** True when a configuration change needs a server restart (the process or its documents). */
export function needsRestart(affects: (key: string) => boolean): boolean {
  return ["server.command", "server.pythonPath", "server.env", "languages"].some((key) =>
    affects(`${SECTION}.${key}`),
  );
}
