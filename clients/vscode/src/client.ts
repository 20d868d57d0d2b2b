// Builds the LanguageClient that runs `diffusion-lsp serve` over stdio.

import * as vscode from "vscode";
import {
  LanguageClient,
  type LanguageClientOptions,
  type ServerOptions,
  State,
  TransportKind,
} from "vscode-languageclient/node";

import type { LspClient } from "./controller";
import { installedPython } from "./install";
import { createMiddleware, type RequestDone, type RequestStart } from "./middleware";
import { languages, resolveServerCommand, SECTION, serverSettings } from "./settings";

export const CLIENT_ID = "diffusionLsp"; // also the `diffusionLsp.trace.server` setting prefix
export const CLIENT_NAME = "Diffusion LSP";

/** A LanguageClient for the current settings, wrapped in the controller's small interface. */
export function createLanguageClient(
  output: vscode.OutputChannel,
  onRequestDone: RequestDone,
  onRequestStart?: RequestStart,
  storageDir?: string,
): LspClient {
  const cfg = vscode.workspace.getConfiguration(SECTION);
  const folder = vscode.workspace.workspaceFolders?.[0]?.uri.fsPath;
  const server = resolveServerCommand(cfg, folder, installedPython(storageDir));
  const run = {
    command: server.command,
    args: server.args,
    transport: TransportKind.stdio,
    options: { env: { ...process.env, ...server.env }, cwd: folder },
  };
  const serverOptions: ServerOptions = { run, debug: run };
  const clientOptions: LanguageClientOptions = {
    documentSelector: languages(cfg).flatMap((language) => [
      { scheme: "file", language },
      { scheme: "untitled", language },
    ]),
    outputChannel: output,
    initializationOptions: serverSettings(cfg),
    middleware: createMiddleware(onRequestDone, onRequestStart),
  };
  output.appendLine(
    `[client] starting ${[server.command, ...server.args].join(" ")} (from ${server.source})`,
  );
  const client = new LanguageClient(CLIENT_ID, CLIENT_NAME, serverOptions, clientOptions);
  client.registerProposedFeatures(); // textDocument/inlineCompletion (LSP 3.18)
  return {
    describe: `${[server.command, ...server.args].join(" ")} (from ${describeSource(server.source)})`,
    source: server.source,
    start: () => client.start(),
    stop: () => client.stop(5000),
    isRunning: () => client.state === State.Running,
    sendRequest: (method, params) => client.sendRequest(method, params),
    sendNotification: (method, params) => client.sendNotification(method, params),
    asWorkspaceEdit: async (edit) => {
      const converted = await client.protocol2CodeConverter.asWorkspaceEdit(
        edit as Parameters<typeof client.protocol2CodeConverter.asWorkspaceEdit>[0],
      );
      if (converted === undefined) {
        throw new Error("the server sent an empty workspace edit");
      }
      return converted;
    },
    onDidChangeState: (listener) =>
      client.onDidChangeState((e) =>
        listener(
          e.newState === State.Running
            ? "running"
            : e.newState === State.Starting
              ? "starting"
              : "stopped",
        ),
      ),
  };
}

function describeSource(source: string): string {
  if (source === "installed") {
    return "the environment the extension installed";
  }
  return source === "PATH" ? "PATH" : `diffusionLsp.${source}`;
}
