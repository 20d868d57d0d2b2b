// The extension's lifecycle: start, stop and restart the client, keep the status bar and
// the `diffusionLsp.active` context key in sync, push setting changes to the server.
// The client is created through a factory so tests run this with a fake client.

import * as vscode from "vscode";

import * as fs from "node:fs";

import {
  DEFAULT_REQUIREMENT,
  findPython,
  installSteps,
  runInstall,
  type Runner,
  spawnRunner,
  type TorchBuild,
  venvDir,
} from "./install";
import type { RequestDone, RequestStart } from "./middleware";
import { repairBlock, type RepairClient, type RepairOutcome } from "./repair";
import { needsRestart, SECTION, serverSettings } from "./settings";
import { STATUS_COMMAND, StatusController } from "./status";

export type LspState = "starting" | "running" | "stopped";

/** The part of vscode-languageclient's LanguageClient the controller uses. */
export interface LspClient extends RepairClient {
  describe: string;
  /** Where the server command came from (settings.ts `ServerCommand.source`). */
  source?: string;
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
  install: "diffusionLsp.installServer",
} as const;

const INSTALL_CHOICE = "Install the server";

const TORCH_CHOICES: Array<{ label: string; detail: string; build: TorchBuild }> = [
  { label: "CPU build of torch", detail: "recommended: about 200 MB, runs everywhere", build: "cpu" },
  {
    label: "PyPI's default torch",
    detail: "CUDA on Linux and Windows (several GB); for an NVIDIA GPU",
    build: "default",
  },
  { label: "No torch", detail: "install a torch build into the environment yourself", build: "none" },
];

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
    /** The extension's global storage: where "Install the server" puts its environment. */
    private readonly storageDir?: string,
    private readonly runner: Runner = spawnRunner(),
  ) {
    this.status = new StatusController(() => this.fetchStatus(), COMMANDS.showOutput);
    this.disposables.push(
      this.status,
      vscode.commands.registerCommand(COMMANDS.repair, () => this.repair()),
      vscode.commands.registerCommand(COMMANDS.restart, () => this.restart()),
      vscode.commands.registerCommand(COMMANDS.showOutput, () => this.output.show(true)),
      vscode.commands.registerCommand(COMMANDS.refreshStatus, () => this.status.refresh()),
      vscode.commands.registerCommand(COMMANDS.toggleInline, () => this.toggleInline()),
      vscode.commands.registerCommand(COMMANDS.install, () => this.installServer()),
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
      // no server configured and none on PATH: offer to install one
      const choices = client.source === "PATH" && this.storageDir !== undefined
        ? [INSTALL_CHOICE, "Show output"]
        : ["Show output"];
      void vscode.window
        .showErrorMessage(`Diffusion LSP: the server did not start (${message}).`, ...choices)
        .then((choice) => {
          if (choice === "Show output") {
            this.output.show(true);
          } else if (choice === INSTALL_CHOICE) {
            void this.installServer();
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

  /**
   * "Install the server": a private virtual environment in the extension's storage with the
   * torch build the user picks and diffusion-lsp (install.ts), with progress and the pip
   * output in the output channel; then the server is started from it.
   */
  async installServer(): Promise<boolean> {
    const title = "Diffusion LSP: install the server";
    if (this.storageDir === undefined) {
      void vscode.window.showErrorMessage(`${title}: the extension has no storage folder.`);
      return false;
    }
    const pick = await vscode.window.showQuickPick(TORCH_CHOICES, { title, placeHolder: "Which torch build?" });
    if (pick === undefined) {
      return false;
    }
    const requirement = (
      await vscode.window.showInputBox({
        title,
        prompt: "What to install with pip: a package name, a wheel file or a VCS URL",
        value: DEFAULT_REQUIREMENT,
      })
    )?.trim();
    if (!requirement) {
      return false;
    }
    const python = await findPython(this.runner);
    if (python === undefined) {
      void vscode.window.showErrorMessage(
        `${title}: no Python 3.11 or newer found. Install one, or set "diffusionLsp.server.pythonPath" ` +
          "to a Python that has diffusion-lsp installed.",
      );
      return false;
    }
    const dir = venvDir(this.storageDir);
    fs.mkdirSync(this.storageDir, { recursive: true });
    const steps = installSteps(python, dir, pick.build, requirement);
    this.output.show(true);
    const result = await vscode.window.withProgress(
      { location: vscode.ProgressLocation.Notification, title, cancellable: true },
      (progress, token) =>
        runInstall(
          steps,
          dir,
          this.runner,
          (step, i, n) => progress.report({ message: `${step.title} (${i + 1}/${n})`, increment: 100 / n }),
          (line) => this.output.appendLine(line),
          () => token.isCancellationRequested,
        ),
    );
    if (!result.ok) {
      const why = result.cancelled
        ? "cancelled"
        : `${result.failed?.title ?? "a step"} failed (${result.error ?? `exit code ${result.code}`})`;
      this.output.appendLine(`[install] ${why}`);
      void vscode.window.showErrorMessage(`${title}: ${why}. The output has the details.`);
      return false;
    }
    this.output.appendLine(`[install] done: the server runs from ${dir}`);
    return this.restart();
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
