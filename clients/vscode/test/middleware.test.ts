import * as assert from "node:assert/strict";
import { test } from "node:test";

import { createMiddleware, filterConfigurationResult, wantsRepairAction } from "../src/middleware";
import { REPAIR_TITLE } from "../src/repair";
import { Position, Range, Uri, WorkspaceEdit } from "./mock/vscode";

test("workspace/configuration answers carry only server keys for our section", async () => {
  const params = { items: [{ section: "diffusionLsp" }, { section: "python" }] };
  const result = [
    { modelPath: "/m", threshold: 0.5, server: { pythonPath: "/py" }, languages: ["python"] },
    { server: "kept" },
  ];
  assert.deepEqual(await filterConfigurationResult(params, result), [
    { modelPath: "/m", threshold: 0.5 },
    { server: "kept" },
  ]);
});

test("middleware forwards requests and reports when each finished, even on failure", async () => {
  let done = 0;
  const seen: Array<[string, boolean]> = [];
  const mw = createMiddleware((kind, ms, ok) => {
    done += 1;
    assert.ok(ms >= 0);
    seen.push([kind, ok]);
  }) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const token = { isCancellationRequested: false };
  const items = await mw.provideCompletionItem("doc", "pos", {}, token, async () => ["item"]);
  assert.deepEqual(items, ["item"]);
  assert.equal(done, 1);
  const inline = await mw.provideInlineCompletionItems("doc", "pos", {}, token, () => ["ghost"]);
  assert.deepEqual(inline, ["ghost"]);
  assert.equal(done, 2);
  await assert.rejects(
    mw.provideCodeActions("doc", { isEmpty: false }, {}, token, async () => {
      throw new Error("cancelled");
    }),
    /cancelled/,
  );
  assert.equal(done, 3);
  assert.deepEqual(seen, [
    ["completion", true],
    ["inlineCompletion", true],
    ["codeAction", false],
  ]);
  const cfg = await mw.workspace.configuration(
    { items: [{ section: "diffusionLsp" }] },
    token,
    async () => [{ device: "cpu", statusRefreshMs: 5 }],
  );
  assert.deepEqual(cfg, [{ device: "cpu" }]);
});

test("middleware reports the start of a request before it runs", async () => {
  const events: string[] = [];
  const mw = createMiddleware(
    (kind) => events.push(`done ${kind}`),
    (kind) => events.push(`start ${kind}`),
  ) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const token = { isCancellationRequested: false };
  await mw.provideInlineCompletionItems("doc", "pos", {}, token, async () => {
    events.push("run");
    return [];
  });
  await mw.provideCodeActions("doc", { isEmpty: true }, { diagnostics: [] }, token, async () => []);
  assert.deepEqual(events, ["start inlineCompletion", "run", "done inlineCompletion"]);
});

test("a resolved repair from the lightbulb is previewed before it is applied", async () => {
  const mw = createMiddleware(() => undefined) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const edit = new WorkspaceEdit();
  edit.replace(Uri.file("/w/a.py"), new Range(new Position(0, 0), new Position(0, 1)), "x");
  const token = { isCancellationRequested: false };
  const repair = await mw.resolveCodeAction({ title: REPAIR_TITLE }, token, async () => ({ title: REPAIR_TITLE, edit }));
  assert.equal(repair.edit.edits[0].metadata.needsConfirmation, true);
  assert.equal(repair.edit.edits[0].edit.newText, "x");
  const other = await mw.resolveCodeAction({ title: "Other" }, token, async () => ({ title: "Other", edit }));
  assert.equal(other.edit, edit);
  assert.equal(await mw.resolveCodeAction({ title: REPAIR_TITLE }, token, async () => undefined), undefined);
});

test("Repair this block is asked for only with a selection or one of our diagnostics", async () => {
  const empty = { isEmpty: true };
  const ours = { source: "diffusion-lsp", message: "syntax error: expected ':'" };
  const other = { source: "pyright", message: "x is not defined" };
  assert.equal(wantsRepairAction({ isEmpty: false }, { diagnostics: [] }), true);
  assert.equal(wantsRepairAction(empty, { diagnostics: [ours] }), true);
  assert.equal(wantsRepairAction(empty, { diagnostics: [] }), false);
  assert.equal(wantsRepairAction(empty, { diagnostics: [other] }), false);
  assert.equal(wantsRepairAction(empty, undefined), false);

  let asked = 0;
  const mw = createMiddleware(() => undefined) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  const token = { isCancellationRequested: false };
  const next = async () => {
    asked += 1;
    return ["Repair this block"];
  };
  // the lightbulb on a clean line: the server is not even asked, nothing is shown
  assert.deepEqual(await mw.provideCodeActions("doc", empty, { diagnostics: [other] }, token, next), []);
  assert.equal(asked, 0);
  assert.deepEqual(await mw.provideCodeActions("doc", empty, { diagnostics: [ours] }, token, next), [
    "Repair this block",
  ]);
  assert.deepEqual(await mw.provideCodeActions("doc", { isEmpty: false }, {}, token, next), [
    "Repair this block",
  ]);
  assert.equal(asked, 2);
});
