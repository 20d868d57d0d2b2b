import * as assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { COMMANDS, Controller, type LspClient, type LspState } from "../src/controller";
import { mock, MockOutputChannel } from "./mock/vscode";

beforeEach(() => mock.reset());

class FakeClient implements LspClient {
  describe = "fake-server serve (from diffusionLsp.PATH)";
  running = false;
  stopped = false;
  requests: Array<{ method: string; params: any }> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  notifications: Array<{ method: string; params: any }> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  listeners: Array<(s: LspState) => void> = [];
  constructor(
    private readonly failStart = false,
    readonly onRequestDone: (kind: "completion" | "inlineCompletion" | "codeAction", ms: number, ok: boolean) => void = () => undefined,
  ) {}
  async start() {
    if (this.failStart) {
      throw new Error("spawn fake-server ENOENT");
    }
    this.running = true;
    this.listeners.forEach((l) => l("running"));
  }
  async stop() {
    this.running = false;
    this.stopped = true;
    this.listeners.forEach((l) => l("stopped"));
  }
  isRunning() {
    return this.running;
  }
  async sendRequest(method: string, params: unknown) {
    this.requests.push({ method, params });
    return { model: { device: "cpu" }, loading: false, completion_latency_ms: { p50: 12.3 } };
  }
  async asWorkspaceEdit(edit: unknown) {
    return edit as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  }
  async sendNotification(method: string, params: unknown) {
    this.notifications.push({ method, params });
  }
  onDidChangeState(listener: (s: LspState) => void) {
    this.listeners.push(listener);
    return { dispose: () => (this.listeners = this.listeners.filter((l) => l !== listener)) };
  }
}

function setup(failFirst = false) {
  const clients: FakeClient[] = [];
  const output = new MockOutputChannel("Diffusion LSP");
  const ctl = new Controller(((_: unknown, onDone: FakeClient["onRequestDone"]) => {
    const c = new FakeClient(failFirst && clients.length === 0, onDone);
    clients.push(c);
    return c;
  }) as any, output as any); // eslint-disable-line @typescript-eslint/no-explicit-any
  return { ctl, clients, output };
}

test("start runs the client, shows the server status and sets the context key", async () => {
  mock.settings.set("diffusionLsp.statusRefreshMs", 0);
  const { ctl, clients } = setup();
  assert.equal(await ctl.start(), true);
  await ctl.status.refresh();
  assert.equal(clients.length, 1);
  const req = clients[0].requests[0];
  assert.deepEqual(req, {
    method: "workspace/executeCommand",
    params: { command: "diffusion-lsp.status", arguments: [] },
  });
  assert.equal(mock.statusBarItems[0].text, "$(sparkle) Diffusion: cpu · 12 ms");
  assert.ok(
    mock.executed.some(
      (e) => e.command === "setContext" && e.args[0] === "diffusionLsp.active" && e.args[1] === true,
    ),
  );
  for (const cmd of Object.values(COMMANDS)) {
    assert.ok(mock.commands.has(cmd), cmd);
  }
  ctl.dispose();
});

test("a server that does not start shows an error and how to fix it", async () => {
  const { ctl, output } = setup(true);
  assert.equal(await ctl.start(), false);
  assert.equal(mock.statusBarItems[0].text, "$(error) Diffusion");
  assert.match(mock.messages[0].text, /ENOENT/);
  assert.ok(output.lines.some((l) => l.includes("diffusionLsp.server.pythonPath")));
  // the restart command starts a fresh client
  assert.equal(await mock.commands.get(COMMANDS.restart)!(), true);
  assert.equal(mock.statusBarItems[0].text.startsWith("$(sparkle)"), true);
  ctl.dispose();
});

test("restart stops the old client and starts a new one", async () => {
  mock.settings.set("diffusionLsp.statusRefreshMs", 0);
  const { ctl, clients } = setup();
  await ctl.start();
  await ctl.restart();
  assert.equal(clients.length, 2);
  assert.equal(clients[0].stopped, true);
  assert.equal(clients[1].running, true);
  await ctl.stop();
  assert.equal(mock.statusBarItems[0].text, "$(circle-slash) Diffusion");
  ctl.dispose();
});

test("setting changes go to the server; process settings restart it", async () => {
  mock.settings.set("diffusionLsp.statusRefreshMs", 0);
  mock.settings.set("diffusionLsp.server.pythonPath", "/py");
  const { ctl, clients } = setup();
  await ctl.start();
  mock.changeSettings({ "diffusionLsp.threshold": 0.7, "diffusionLsp.device": "cpu" });
  assert.deepEqual(clients[0].notifications, [
    {
      method: "workspace/didChangeConfiguration",
      params: { settings: { diffusionLsp: { device: "cpu", threshold: 0.7 } } },
    },
  ]);
  mock.changeSettings({ "diffusionLsp.server.pythonPath": "/other/python" });
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  assert.equal(clients.length, 2);
  assert.equal(clients[0].stopped, true);
  ctl.dispose();
});

test("the toggle command turns ghost text off and on in the running server", async () => {
  mock.settings.set("diffusionLsp.statusRefreshMs", 0);
  const { ctl, clients } = setup();
  await ctl.start();
  await mock.commands.get(COMMANDS.toggleInline)!();
  assert.equal(mock.settings.get("diffusionLsp.enableInlineCompletion"), false);
  const sent = clients[0].notifications.map((n) => n.params.settings.diffusionLsp);
  assert.equal(sent.at(-1).enableInlineCompletion, false);
  assert.deepEqual(mock.messages.at(-1), { level: "info", text: "Diffusion LSP: ghost text off" });
  assert.equal(await ctl.toggleInline(), true);
  assert.equal(clients[0].notifications.at(-1)!.params.settings.diffusionLsp.enableInlineCompletion, true);
  assert.equal(clients.length, 1); // no restart
  ctl.dispose();
});

test("the repair command needs an editor and a running server", async () => {
  const { ctl } = setup();
  assert.equal(await ctl.repair(), undefined); // no editor
  const { window } = await import("./mock/vscode");
  window.activeTextEditor = { document: {}, selection: {} };
  assert.equal(await ctl.repair(), undefined);
  assert.match(mock.messages[0].text, /not running/);
  ctl.dispose();
});

test("completion requests show their latency and trigger one (debounced) status refresh", async () => {
  mock.settings.set("diffusionLsp.statusRefreshMs", 0);
  const { ctl, clients } = setup();
  await ctl.start();
  await ctl.status.refresh();
  const before = clients[0].requests.length;
  clients[0].onRequestDone("inlineCompletion", 33.4, true);
  assert.equal(mock.statusBarItems[0].text, "$(sparkle) Diffusion: cpu · 33 ms");
  clients[0].onRequestDone("completion", 99, false); // a cancelled request keeps the last latency
  assert.equal(mock.statusBarItems[0].text, "$(sparkle) Diffusion: cpu · 33 ms");
  await new Promise((r) => setTimeout(r, 400));
  assert.equal(clients[0].requests.length, before + 1);
  ctl.dispose();
});

test("the repair command runs against the running client", async () => {
  mock.settings.set("diffusionLsp.statusRefreshMs", 0);
  const { ctl, clients } = setup();
  await ctl.start();
  const { window, MockTextDocument, Uri, Selection, Position } = await import("./mock/vscode");
  const p = new Position(0, 0);
  window.activeTextEditor = { document: new MockTextDocument(Uri.file("/a.py"), "x\n"), selection: new Selection(p, p) };
  assert.equal(await mock.commands.get(COMMANDS.repair)!(), "no-action"); // fake client returns a status dict
  assert.equal(clients[0].requests.at(-1)!.method, "textDocument/codeAction");
  ctl.dispose();
});
