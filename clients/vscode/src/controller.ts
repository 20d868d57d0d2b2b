// The extension's lifecycle: start, stop and restart the client, keep the status bar and
// the `diffusionLsp.active` context key in sync, push setting changes to the server.
// The client is created through a factory so tests run this with a fake client.

import * as vscode from "vscode";

import type { RequestDone, RequestStart } from "./middleware";
import { repairBlock, type RepairClient, type RepairOutcome } from "./repair";
import { needsRestart, SECTION, serverSettings } from "./settings";
import { STATUS_COMMAND, StatusController } from "./status";

export type LspState = "starting" | "running" | "stopped";

/** The part of vscode-languageclient's LanguageClient the controller uses. */
export interface LspClient extends RepairClient {
  describe: string;
  start(): Promise<void>;
  stop(): Promise<void>;
  isRunning(): boolean;
  sendRequest(method: string, params: unknown): Promise<unknown>;
  sendNotification(method: string, params: unknown): Promise<void>;
  onDidChangeState(listener: (state: LspState) => void): vscode.Disposable;
}

export type ClientFactory = (
  output: vscode.OutputChannel,
  onRequestDone: RequestDone,
  onRequestStart?: RequestStart,
) => LspClient;

export const COMMANDS = {
  repair: "diffusionLsp.repairBlock",
  restart: "diffusionLsp.restartServer",
  showOutput: "diffusionLsp.showOutput",
  refreshStatus: "diffusionLsp.refreshStatus",
  toggleInline: "diffusionLsp.toggleInlineCompletion",
} as const;

const ACTIVE_CONTEXT_KEY = "diffusionLsp.active";

export class Controller implements vscode.Disposable {
  readonly status: StatusController;
  private client: LspClient | undefined;
  private clientSubscription: vscode.Disposable | undefined;
  private readonly disposables: vscode.Disposable[] = [];
  private refreshTimer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly factory: ClientFactory,
    readonly output: vscode.OutputChannel,
  ) {
    this.status = new StatusController(() => this.fetchStatus(), COMMANDS.showOutput);
    this.disposables.push(
      this.status,
      vscode.commands.registerCommand(COMMANDS.repair, () => this.repair()),
      vscode.commands.registerCommand(COMMANDS.restart, () => this.restart()),
      vscode.commands.registerCommand(COMMANDS.showOutput, () => this.output.show(true)),
      vscode.commands.registerCommand(COMMANDS.refreshStatus, () => this.status.refresh()),
      vscode.commands.registerCommand(COMMANDS.toggleInline, () => this.toggleInline()),
      vscode.workspace.onDidChangeConfiguration((e) => this.onConfigurationChanged(e)),
    );
  }

  get running(): boolean {
    return this.client?.isRunning() ?? false;
  }

  /** Starts the server; on failure the status bar shows the error and the output says why. */
  async start(): Promise<boolean> {
    if (this.client !== undefined) {
      return this.running;
    }
    const client = this.factory(
      this.output,
      (kind, ms, ok) => this.onRequestDone(kind, ms, ok),
      () => this.status.requestStarted(),
    );
    this.client = client;
    this.clientSubscription = client.onDidChangeState((state) => this.onClientState(state));
    this.status.setState("starting");
    try {
      await client.start();
    } catch (err) {
      const message = err instanceof Error ? err.message : String(err);
      this.output.appendLine(`[client] the server did not start: ${message}`);
      this.output.appendLine(
        `[client] command: ${client.describe}. Set "diffusionLsp.server.pythonPath" to a Python ` +
          `that has diffusion-lsp installed, or "diffusionLsp.server.command" to the full command.`,
      );
      this.status.setState("error", "server did not start");
      await this.disposeClient();
      void vscode.window
        .showErrorMessage(`Diffusion LSP: the server did not start (${message}).`, "Show output")
        .then((choice) => {
          if (choice === "Show output") {
            this.output.show(true);
          }
        });
      return false;
    }
    this.onClientState("running");
    return true;
  }

  async stop(): Promise<void> {
    const client = this.client;
    if (client === undefined) {
      return;
    }
    try {
      if (client.isRunning()) {
        await client.stop();
      }
    } catch (err) {
      this.output.appendLine(`[client] stop failed: ${err instanceof Error ? err.message : err}`);
    }
    await this.disposeClient();
    this.status.setState("stopped");
  }

  async restart(): Promise<boolean> {
    this.output.appendLine("[client] restarting the server");
    await this.stop();
    return this.start();
  }

  repair(): Promise<RepairOutcome | undefined> {
    const editor = vscode.window.activeTextEditor;
    if (editor === undefined) {
      return Promise.resolve(undefined);
    }
    const client = this.client;
    if (client === undefined || !client.isRunning()) {
      void vscode.window.showWarningMessage("Diffusion LSP: the server is not running.");
      return Promise.resolve(undefined);
    }
    return repairBlock(editor, client).finally(() => this.scheduleStatusRefresh());
  }

  private onRequestDone(kind: Parameters<RequestDone>[0], ms: number, ok: boolean): void {
    this.status.requestFinished();
    if (ok && kind !== "codeAction") {
      this.status.recordLatency(ms);
    }
    this.scheduleStatusRefresh();
  }

  private async fetchStatus(): Promise<unknown> {
    if (this.client === undefined || !this.client.isRunning()) {
      throw new Error("server not running");
    }
    return this.client.sendRequest("workspace/executeCommand", {
      command: STATUS_COMMAND,
      arguments: [],
    });
  }

  /** Coalesces status refreshes after bursts of requests (one per 250 ms at most). */
  private scheduleStatusRefresh(): void {
    if (this.refreshTimer !== undefined) {
      return;
    }
    this.refreshTimer = setTimeout(() => {
      this.refreshTimer = undefined;
      void this.status.refresh();
    }, 250);
  }

  /** Ghost text on/off: flips the user setting `enableInlineCompletion`, which reaches the
   *  running server as a configuration change (no restart). */
  async toggleInline(): Promise<boolean> {
    const config = vscode.workspace.getConfiguration(SECTION);
    const on = !(config.get<boolean>("enableInlineCompletion") ?? true);
    await config.update("enableInlineCompletion", on, vscode.ConfigurationTarget.Global);
    void vscode.window.showInformationMessage(`Diffusion LSP: ghost text ${on ? "on" : "off"}`);
    return on;
  }

  private onClientState(state: LspState): void {
    void vscode.commands.executeCommand("setContext", ACTIVE_CONTEXT_KEY, state === "running");
    if (state === "running") {
      this.status.setState("running");
      this.status.startPolling(
        vscode.workspace.getConfiguration(SECTION).get<number>("statusRefreshMs") ?? 5000,
      );
      void this.status.refresh();
    } else {
      this.status.stopPolling();
      this.status.setState(state === "starting" ? "starting" : "stopped");
    }
  }

  private onConfigurationChanged(e: vscode.ConfigurationChangeEvent): void {
    if (!e.affectsConfiguration(SECTION)) {
      return;
    }
    if (needsRestart((key) => e.affectsConfiguration(key))) {
      void this.restart();
      return;
    }
    const client = this.client;
    if (client !== undefined && client.isRunning()) {
      const settings = serverSettings(vscode.workspace.getConfiguration(SECTION));
      void client.sendNotification("workspace/didChangeConfiguration", {
        settings: { [SECTION]: settings },
      });
    }
  }

  private async disposeClient(): Promise<void> {
    this.clientSubscription?.dispose();
    this.clientSubscription = undefined;
    this.client = undefined;
    void vscode.commands.executeCommand("setContext", ACTIVE_CONTEXT_KEY, false);
  }

  dispose(): void {
    if (this.refreshTimer !== undefined) {
      clearTimeout(this.refreshTimer);
    }
    for (const d of this.disposables) {
      d.dispose();
    }
  }
}
