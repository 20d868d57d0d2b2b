import * as assert from "node:assert/strict";
import * as os from "node:os";
import * as path from "node:path";
import { test } from "node:test";

import {
  expandVariables,
  filterServerSection,
  languages,
  needsRestart,
  resolveServerCommand,
  SERVER_SETTING_KEYS,
  serverSettings,
} from "../src/settings";

function reader(values: Record<string, unknown>) {
  return { get: <T>(key: string) => values[key] as T | undefined };
}

test("serverSettings sends set values and leaves null, undefined and empty out", () => {
  const got = serverSettings(
    reader({
      modelPath: "/models/x",
      device: "cpu",
      blockSize: null,
      threshold: 0.8,
      cacheDir: "",
      enableRepair: false,
      "server.command": ["x"],
    }),
  );
  assert.deepEqual(got, { modelPath: "/models/x", device: "cpu", threshold: 0.8, enableRepair: false });
});

test("every server key is forwarded when set", () => {
  const all = Object.fromEntries(SERVER_SETTING_KEYS.map((k, i) => [k, i + 1]));
  assert.deepEqual(Object.keys(serverSettings(reader(all))).sort(), [...SERVER_SETTING_KEYS].sort());
});

test("filterServerSection drops client-only keys", () => {
  const section = { modelPath: "/m", server: { command: ["a"] }, languages: ["python"], trace: {} };
  assert.deepEqual(filterServerSection(section), { modelPath: "/m" });
  assert.equal(filterServerSection(null), null);
});

test("server.command wins over pythonPath and expands variables", () => {
  const cmd = resolveServerCommand(
    reader({
      "server.command": ["${workspaceFolder}/.venv/bin/diffusion-lsp", "serve", ""],
      "server.pythonPath": "/usr/bin/python3",
      "server.env": { CUDA_VISIBLE_DEVICES: "0", HOME_CACHE: "~/c" },
    }),
    "/proj",
  );
  assert.equal(cmd.command, "/proj/.venv/bin/diffusion-lsp");
  assert.deepEqual(cmd.args, ["serve"]);
  assert.equal(cmd.source, "server.command");
  assert.equal(cmd.env.CUDA_VISIBLE_DEVICES, "0");
  assert.equal(cmd.env.HOME_CACHE, path.join(os.homedir(), "c"));
});

test("pythonPath runs the lsp_server module", () => {
  const cmd = resolveServerCommand(reader({ "server.pythonPath": "~/venv/bin/python" }), undefined);
  assert.equal(cmd.command, path.join(os.homedir(), "venv/bin/python"));
  assert.deepEqual(cmd.args, ["-P", "-m", "lsp_server"]); // the workspace cannot shadow a module
  assert.equal(cmd.source, "server.pythonPath");
});

test("default is diffusion-lsp serve from PATH", () => {
  const cmd = resolveServerCommand(reader({ "server.command": [], "server.pythonPath": "  " }), "/p");
  assert.deepEqual([cmd.command, ...cmd.args], ["diffusion-lsp", "serve"]);
  assert.equal(cmd.source, "PATH");
});

test("expandVariables", () => {
  assert.equal(expandVariables("~", undefined), os.homedir());
  assert.equal(expandVariables("a~b", undefined), "a~b");
  assert.equal(expandVariables("${userHome}/x", undefined), `${os.homedir()}/x`);
  assert.equal(expandVariables("${workspaceFolder}/x", undefined), "${workspaceFolder}/x");
});

test("languages default to python", () => {
  assert.deepEqual(languages(reader({})), ["python"]);
  assert.deepEqual(languages(reader({ languages: ["python", "cython"] })), ["python", "cython"]);
});

test("needsRestart only for the process settings", () => {
  assert.equal(needsRestart((k) => k === "diffusionLsp.server.pythonPath"), true);
  assert.equal(needsRestart((k) => k === "diffusionLsp.languages"), true);
  assert.equal(needsRestart((k) => k === "diffusionLsp.threshold"), false);
});
