// The package.json contributions match the code: every server setting is a described
// setting, every command is contributed, the repair command has a keybinding.
import * as assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";

import { COMMANDS } from "../src/controller";
import { SECTION, SERVER_SETTING_KEYS } from "../src/settings";

const manifest = JSON.parse(
  fs.readFileSync(path.join(__dirname, "..", "..", "package.json"), "utf8"),
);

test("every server setting is contributed with a description", () => {
  const props = manifest.contributes.configuration.properties;
  for (const key of SERVER_SETTING_KEYS) {
    const prop = props[`${SECTION}.${key}`];
    assert.ok(prop, `missing setting ${key}`);
    assert.ok((prop.markdownDescription ?? prop.description ?? "").length > 10, key);
  }
  for (const key of ["server.command", "server.pythonPath", "trace.server"]) {
    assert.ok(props[`${SECTION}.${key}`], key);
  }
});

test("commands and the repair keybinding are contributed", () => {
  const contributed = manifest.contributes.commands.map((c: { command: string }) => c.command);
  for (const cmd of Object.values(COMMANDS)) {
    assert.ok(contributed.includes(cmd), cmd);
  }
  const repair = manifest.contributes.commands.find(
    (c: { command: string }) => c.command === COMMANDS.repair,
  );
  assert.equal(repair.title, "Repair this block");
  assert.ok(
    manifest.contributes.keybindings.some(
      (k: { command: string; key: string }) => k.command === COMMANDS.repair && k.key,
    ),
  );
  assert.equal(manifest.main, "./dist/extension.js");
});

test("the README installs the CPU torch build before the server", () => {
  const readme = fs.readFileSync(path.join(__dirname, "..", "..", "README.md"), "utf8");
  const installs = readme.split("\n").filter((line) => line.trimStart().startsWith("pip install"));
  // an unpinned torch (pulled in by `pip install diffusion-lsp`) brings GBs of CUDA
  assert.match(installs[0] ?? "", /^pip install torch==\d+\.\d+\.\d+(\s|$)/);
  const root = fs.readFileSync(path.join(__dirname, "..", "..", "..", "..", "README.md"), "utf8");
  const pin = /pip install (torch==[\d.]+)/.exec(root);
  assert.ok(pin, "the repository README pins torch");
  assert.ok(installs[0].includes(pin[1]), `${installs[0]} vs ${pin[1]}`);
});
