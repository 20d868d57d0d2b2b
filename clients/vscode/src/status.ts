// Status bar item: server state, model loaded, device and last request latency.
// The numbers come from the server command `diffusion-lsp.status` (a JSON object).

import * as vscode from "vscode";

export const STATUS_COMMAND = "diffusion-lsp.status";

/** What the status bar shows, parsed from the server's status object. */
export interface ServerStatus {
  modelLoaded: boolean | undefined;
  /** The server is loading (or reloading) the model. */
  loading: boolean;
  /** Why the model did not load, if it did not. */
  modelError: string | undefined;
  device: string | undefined;
  /** Latency the server reports: its last request, else its median completion latency. */
  serverLatencyMs: number | undefined;
  model: string | undefined;
  raw: Record<string, unknown>;
}

export type ClientState = "stopped" | "starting" | "running" | "error";

function asObject(value: unknown): Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value)
    ? (value as Record<string, unknown>)
    : {};
}

function pick(obj: Record<string, unknown>, ...keys: string[]): unknown {
  for (const key of keys) {
    if (obj[key] !== undefined && obj[key] !== null) {
      return obj[key];
    }
  }
  return undefined;
}

function asNumber(value: unknown): number | undefined {
  if (typeof value === "number" && Number.isFinite(value)) {
    return value;
  }
  if (typeof value === "string" && value.trim() !== "" && Number.isFinite(Number(value))) {
    return Number(value);
  }
  return undefined;
}

function asText(value: unknown): string | undefined {
  return typeof value === "string" && value !== "" ? value : undefined;
}

/**
 * Parses the server's `diffusion-lsp.status` object:
 * `{model: {path, device, ...} | null, loading, model_error, completion_latency_ms: {p50}, ...}`.
 * Also accepts flat camelCase/snake_case keys (`modelLoaded`, `device`, `lastLatencyMs`), so
 * small server format changes do not blank the status bar.
 */
export function parseStatus(value: unknown): ServerStatus {
  const raw = asObject(value);
  const modelObj = asObject(raw.model);
  const loading = pick(raw, "loading") === true;
  let loaded = pick(raw, "modelLoaded", "model_loaded", "loaded") ?? pick(modelObj, "loaded");
  if (loaded === undefined && "model" in raw) {
    loaded = raw.model !== null && raw.model !== undefined && !loading;
  }
  const latency =
    asNumber(pick(raw, "lastLatencyMs", "last_latency_ms", "latencyMs", "latency_ms")) ??
    asNumber(pick(asObject(raw.completion_latency_ms ?? raw.completionLatencyMs), "p50"));
  const model =
    typeof raw.model === "string"
      ? raw.model
      : pick(raw, "modelPath", "model_path") ?? pick(modelObj, "path", "name");
  return {
    modelLoaded: typeof loaded === "boolean" ? loaded : undefined,
    loading,
    modelError: asText(pick(raw, "model_error", "modelError")),
    device: asText(pick(modelObj, "device") ?? pick(raw, "device")),
    serverLatencyMs: latency,
    model: asText(model),
    raw,
  };
}

/**
 * Status bar text for a client state, the server's status, the last request latency and
 * the number of model requests in flight (a spinning icon while there are any).
 */
export function formatStatus(
  state: ClientState,
  status: ServerStatus | undefined,
  error?: string,
  lastLatencyMs?: number,
  inFlight = 0,
): { text: string; tooltip: string } {
  const shown = formatIdle(state, status, error, lastLatencyMs);
  if (state !== "running" || inFlight <= 0) {
    return shown;
  }
  return {
    text: shown.text.replace(/^\$\([^)]*\)/, "$(sync~spin)"),
    tooltip: `${shown.tooltip}\nworking: ${inFlight} request${inFlight === 1 ? "" : "s"} in flight`,
  };
}

function formatIdle(
  state: ClientState,
  status: ServerStatus | undefined,
  error?: string,
  lastLatencyMs?: number,
): { text: string; tooltip: string } {
  if (state === "stopped") {
    return { text: "$(circle-slash) Diffusion", tooltip: "Diffusion LSP: server stopped" };
  }
  if (state === "starting") {
    return { text: "$(sync~spin) Diffusion", tooltip: "Diffusion LSP: starting the server" };
  }
  if (state === "error") {
    return {
      text: "$(error) Diffusion",
      tooltip: `Diffusion LSP: ${error ?? "server failed"} (click for the output)`,
    };
  }
  if (status === undefined) {
    return { text: "$(sparkle) Diffusion", tooltip: "Diffusion LSP: running" };
  }
  const parts: string[] = [];
  let icon = "$(sparkle)";
  if (status.modelError !== undefined && status.modelLoaded !== true) {
    icon = "$(warning)";
    parts.push("no model");
  } else if (status.loading || status.modelLoaded === false) {
    icon = "$(loading~spin)";
    parts.push("loading model");
  }
  if (status.device !== undefined) {
    parts.push(status.device);
  }
  const latency = lastLatencyMs ?? status.serverLatencyMs;
  if (latency !== undefined) {
    parts.push(`${Math.round(latency)} ms`);
  }
  const text = parts.length > 0 ? `${icon} Diffusion: ${parts.join(" · ")}` : `${icon} Diffusion`;
  const yesNo = status.modelLoaded === undefined ? "unknown" : status.modelLoaded ? "yes" : "no";
  const lines = ["Diffusion LSP: running", `model loaded: ${yesNo}`];
  if (status.modelError !== undefined) {
    lines.push(`model error: ${status.modelError}`);
  }
  if (status.model !== undefined) {
    lines.push(`model: ${status.model}`);
  }
  lines.push(`device: ${status.device ?? "unknown"}`);
  lines.push(
    `last request: ${lastLatencyMs === undefined ? "none yet" : `${lastLatencyMs.toFixed(0)} ms`}`,
  );
  if (status.serverLatencyMs !== undefined) {
    lines.push(`server completion latency (median): ${status.serverLatencyMs.toFixed(0)} ms`);
  }
  if (error !== undefined) {
    lines.push(`status request failed: ${error}`);
  }
  return { text, tooltip: lines.join("\n") };
}

/**
 * Owns the status bar item. `fetch` asks the server for its status; `refresh` is
 * coalesced (one request in flight at a time, one more queued at most).
 */
export class StatusController implements vscode.Disposable {
  private readonly item: vscode.StatusBarItem;
  private state: ClientState = "stopped";
  private status: ServerStatus | undefined;
  private error: string | undefined;
  private inFlight: Promise<void> | undefined;
  private queued = false;
  private timer: ReturnType<typeof setInterval> | undefined;
  private lastLatencyMs: number | undefined;
  private busy = 0; // model requests in flight

  constructor(
    private readonly fetch: () => Promise<unknown>,
    clickCommand: string,
  ) {
    this.item = vscode.window.createStatusBarItem(vscode.StatusBarAlignment.Right, 100);
    this.item.name = "Diffusion LSP";
    this.item.command = clickCommand;
    this.render();
    this.item.show();
  }

  /** The last parsed status (for tests and the refresh command). */
  get current(): ServerStatus | undefined {
    return this.status;
  }

  get text(): string {
    return this.item.text;
  }

  /** Requests in flight (the middleware's start/end): the icon spins while there are any. */
  get inFlightRequests(): number {
    return this.busy;
  }

  requestStarted(): void {
    this.busy += 1;
    this.render();
  }

  requestFinished(): void {
    this.busy = Math.max(0, this.busy - 1);
    this.render();
  }

  /** Latency of the last completion/inline completion request, measured by the client. */
  recordLatency(ms: number): void {
    this.lastLatencyMs = ms;
    this.render();
  }

  setState(state: ClientState, error?: string): void {
    this.state = state;
    this.error = error;
    if (state !== "running") {
      this.status = undefined;
      this.busy = 0; // a stopped server answers nothing more
    }
    this.render();
  }

  /** Refreshes every `intervalMs` while running (0 disables the timer). */
  startPolling(intervalMs: number): void {
    this.stopPolling();
    if (intervalMs > 0) {
      this.timer = setInterval(() => void this.refresh(), intervalMs);
      this.timer.unref?.();
    }
  }

  stopPolling(): void {
    if (this.timer !== undefined) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  /** Asks the server for its status; resolves when the status bar shows the answer. */
  refresh(): Promise<void> {
    if (this.state !== "running") {
      return Promise.resolve();
    }
    if (this.inFlight !== undefined) {
      this.queued = true;
      return this.inFlight;
    }
    this.inFlight = (async () => {
      try {
        do {
          this.queued = false;
          try {
            const value = await this.fetch();
            this.status = parseStatus(value);
            this.error = undefined;
          } catch (err) {
            this.error = err instanceof Error ? err.message : String(err);
          }
          this.render();
        } while (this.queued && this.state === "running");
      } finally {
        this.inFlight = undefined;
      }
    })();
    return this.inFlight;
  }

  private render(): void {
    const { text, tooltip } = formatStatus(
      this.state, this.status, this.error, this.lastLatencyMs, this.busy,
    );
    this.item.text = text;
    this.item.tooltip = tooltip;
    this.item.backgroundColor =
      this.state === "error" ? new vscode.ThemeColor("statusBarItem.errorBackground") : undefined;
  }

  dispose(): void {
    this.stopPolling();
    this.item.dispose();
  }
}
