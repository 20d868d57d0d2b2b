import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { beforeEach, test } from "node:test";

import { Controller, type LspClient, type LspState } from "../src/controller";
import {
  CPU_TORCH_INDEX,
  findPython,
  INSTALLED_MARKER,
  installedPython,
  installSteps,
  type Runner,
  runInstall,
  venvDir,
  venvPython,
} from "../src/install";
import { resolveServerCommand } from "../src/settings";
import { mock, MockOutputChannel } from "./mock/vscode";

beforeEach(() => mock.reset());

const noSettings = { get: () => undefined };

test("the plan: venv, pip, the chosen torch build, the server, an import check", () => {
  const dir = "/store/server-venv";
  const py = venvPython(dir, "linux");
  const cpu = installSteps(["python3.12"], dir, "cpu", "diffusion-lsp", "linux");
  assert.deepEqual(cpu.map((s) => [s.command, ...s.args]), [
    ["python3.12", "-m", "venv", dir],
    [py, "-m", "pip", "install", "--upgrade", "pip"],
    [py, "-m", "pip", "install", "torch", "--index-url", CPU_TORCH_INDEX],
    [py, "-m", "pip", "install", "diffusion-lsp"],
    [py, "-P", "-c", "import lsp_server.cli"],
  ]);
  // macOS: PyPI's torch is the CPU build; Windows: Scripts\python.exe and the py launcher
  const mac = installSteps(["python3"], dir, "cpu", "diffusion-lsp", "darwin");
  assert.deepEqual(mac[2].args, ["-m", "pip", "install", "torch"]);
  const win = installSteps(["py", "-3"], "C:\\s\\server-venv", "default", "./x.whl", "win32");
  assert.deepEqual([win[0].command, ...win[0].args], ["py", "-3", "-m", "venv", "C:\\s\\server-venv"]);
  assert.ok(win[1].command.endsWith(path.join("Scripts", "python.exe")));
  assert.deepEqual(win[2].args, ["-m", "pip", "install", "torch"]);
  assert.deepEqual(win[3].args, ["-m", "pip", "install", "./x.whl"]);
  const none = installSteps(["python3"], dir, "none", "diffusion-lsp", "linux");
  assert.ok(!none.some((s) => s.args.includes("torch")));
});

test("findPython takes the first interpreter that runs and is 3.11+", async () => {
  const tried: string[] = [];
  const run: Runner = async (command) => {
    tried.push(command);
    if (command === "python3.13") {
      throw new Error("spawn python3.13 ENOENT");
    }
    return command === "python3.12" ? 1 : 0; // 3.12 "too old" here, python3.11 fine
  };
  assert.deepEqual(await findPython(run, "linux"), ["python3.11"]);
  assert.deepEqual(tried, ["python3.13", "python3.12", "python3.11"]);
  assert.equal(await findPython(async () => 1, "linux"), undefined);
});

test("runInstall stops at the first failure and writes the marker only on success", async () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), "dlsp-"));
  const steps = installSteps(["python3"], tmp, "cpu", "diffusion-lsp", "linux");
  const reported: string[] = [];
  const lines: string[] = [];
  const failing: Runner = async (_c, args, out) => {
    out(`ran ${args.join(" ")}`);
    return args.includes("torch") ? 2 : 0;
  };
  const bad = await runInstall(steps, tmp, failing, (s) => reported.push(s.title), (l) => lines.push(l));
  assert.equal(bad.ok, false);
  assert.equal(bad.code, 2);
  assert.equal(bad.failed?.title, "installing torch (CPU build)");
  assert.equal(reported.length, 3);
  assert.ok(!fs.existsSync(path.join(tmp, INSTALLED_MARKER)));
  assert.ok(lines.some((l) => l.startsWith("[install] ")));

  const crash = await runInstall(steps, tmp, async () => {
    throw new Error("ENOENT");
  }, () => undefined, () => undefined);
  assert.equal(crash.error, "ENOENT");

  let n = 0;
  const stop = await runInstall(steps, tmp, async () => 0, () => undefined, () => undefined, () => ++n > 2);
  assert.equal(stop.cancelled, true);

  const good = await runInstall(steps, tmp, async () => 0, () => undefined, () => undefined);
  assert.equal(good.ok, true);
  assert.ok(fs.existsSync(path.join(tmp, INSTALLED_MARKER)));
});

test("the installed environment is used when nothing else is configured", () => {
  const storage = "/store";
  const py = venvPython(venvDir(storage), "linux");
  const all = (p: string) => p === py || p.endsWith(INSTALLED_MARKER);
  assert.equal(installedPython(storage, "linux", all), py);
  assert.equal(installedPython(storage, "linux", (p) => p === py), undefined); // unfinished
  assert.equal(installedPython(undefined, "linux", all), undefined);
  const cmd = resolveServerCommand(noSettings, undefined, py);
  assert.deepEqual([cmd.command, ...cmd.args, cmd.source], [py, "-P", "-m", "lsp_server", "installed"]);
  const pinned = { get: (k: string) => (k === "server.pythonPath" ? "/my/python" : undefined) };
  assert.equal(resolveServerCommand(pinned as any, undefined, py).command, "/my/python"); // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(resolveServerCommand(noSettings, undefined, undefined).source, "PATH");
});

class FailingClient implements LspClient {
  describe = "diffusion-lsp serve (from PATH)";
  source = "PATH";
  constructor(private readonly fail: boolean) {}
  async start() {
    if (this.fail) {
      throw new Error("spawn diffusion-lsp ENOENT");
    }
  }
  async stop() {}
  isRunning() {
    return !this.fail;
  }
  async sendRequest() {
    return {};
  }
  async sendNotification() {}
  async asWorkspaceEdit(edit: unknown) {
    return edit as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  }
  onDidChangeState(_: (s: LspState) => void) {
    return { dispose: () => undefined };
  }
}

test("no server on PATH: the error offers the install, which runs with progress and restarts", async () => {
  const storage = fs.mkdtempSync(path.join(os.tmpdir(), "dlsp-store-"));
  const ran: string[][] = [];
  const runner: Runner = async (command, args) => {
    ran.push([command, ...args]);
    return 0;
  };
  let made = 0;
  const output = new MockOutputChannel("Diffusion LSP");
  const ctl = new Controller((() => new FailingClient(made++ === 0)) as any, output as any, storage, runner); // eslint-disable-line @typescript-eslint/no-explicit-any
  mock.quickPick = (items) => items.find((i: { build: string }) => i.build === "cpu");
  mock.inputBox = "diffusion-lsp";
  assert.equal(await ctl.start(), false);
  assert.match(mock.messages[0].text, /did not start/);

  assert.equal(await ctl.installServer(), true);
  const dir = venvDir(storage);
  assert.deepEqual(ran[0].slice(-2), ["-c", "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)"]);
  assert.ok(ran.some((c) => c.includes("--index-url") && c.includes("torch")));
  assert.ok(ran.some((c) => c.join(" ").endsWith("-m venv " + dir)));
  assert.ok(fs.existsSync(path.join(dir, INSTALLED_MARKER)));
  assert.ok(mock.progress.some((p) => /installing torch \(CPU build\) \(3\/5\)/.test(p)));
  assert.equal(made, 2); // restarted after the install
  ctl.dispose();

  // dismissing the torch question installs nothing
  mock.reset();
  ran.length = 0;
  const again = new Controller((() => new FailingClient(true)) as any, output as any, storage, runner); // eslint-disable-line @typescript-eslint/no-explicit-any
  assert.equal(await again.installServer(), false);
  assert.equal(ran.length, 0);
  again.dispose();
});
