import * as assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import {
  countTextEdits,
  findRepairAction,
  lspRange,
  REPAIR_TITLE,
  type RepairClient,
  repairBlock,
} from "../src/repair";
import { mock, MockTextDocument, Position, Range, Selection, Uri, WorkspaceEdit } from "./mock/vscode";

beforeEach(() => mock.reset());

function editorAt(anchor: [number, number], active: [number, number] = anchor) {
  const document = new MockTextDocument(Uri.file("/w/a.py"), "def f(x):\n    return x +\n");
  const selection = new Selection(new Position(...anchor), new Position(...active));
  return { document, selection } as any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

const EDIT = {
  documentChanges: [
    {
      textDocument: { uri: "file:///w/a.py", version: 3 },
      edits: [{ range: { start: { line: 1, character: 14 }, end: { line: 1, character: 14 } }, newText: " 1" }],
    },
  ],
};

/** A fake server: answers codeAction (lazily, with data) and codeAction/resolve. */
class FakeServer implements RepairClient {
  calls: Array<{ method: string; params: any }> = []; // eslint-disable-line @typescript-eslint/no-explicit-any
  constructor(
    public actions: unknown = [
      { title: "Other", kind: "quickfix" },
      { title: REPAIR_TITLE, kind: "refactor.rewrite", data: { uri: "file:///w/a.py", startLine: 0, endLine: 1 } },
    ],
    public resolved: unknown = undefined,
    public fail: string | undefined = undefined,
  ) {}
  async sendRequest(method: string, params: unknown) {
    this.calls.push({ method, params });
    if (this.fail !== undefined) {
      throw new Error(this.fail);
    }
    if (method === "textDocument/codeAction") {
      return this.actions;
    }
    return this.resolved ?? { ...(params as object), edit: EDIT };
  }
  async asWorkspaceEdit(edit: unknown) {
    const ws = new WorkspaceEdit(); // what the language client's converter makes of EDIT
    for (const change of (edit as typeof EDIT).documentChanges ?? []) {
      for (const e of change.edits) {
        const r = e.range;
        ws.replace(Uri.file("/w/a.py"), new Range(new Position(r.start.line, r.start.character),
          new Position(r.end.line, r.end.character)), e.newText);
      }
    }
    return ws as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  }
}

test("lspRange keeps an empty selection empty (the server picks the block)", () => {
  assert.deepEqual(lspRange(editorAt([1, 3]).selection), {
    start: { line: 1, character: 3 },
    end: { line: 1, character: 3 },
  });
  assert.deepEqual(lspRange(editorAt([1, 5], [0, 2]).selection), {
    start: { line: 0, character: 2 },
    end: { line: 1, character: 5 },
  });
});

test("findRepairAction skips commands and other actions", () => {
  const good = { title: REPAIR_TITLE, kind: "quickfix" };
  assert.equal(findRepairAction([{ title: REPAIR_TITLE, command: "x" }, { title: "Other" }, good]), good);
  assert.equal(findRepairAction(null), undefined);
  assert.equal(findRepairAction([{ title: "Other" }]), undefined);
});

test("countTextEdits counts changes and documentChanges", () => {
  assert.equal(countTextEdits(undefined), 0);
  assert.equal(countTextEdits({ changes: {} }), 0);
  assert.equal(countTextEdits({ changes: { a: [1, 2] } }), 2);
  assert.equal(countTextEdits(EDIT), 1);
});

test("repairBlock asks for the action at the cursor, resolves it and applies the edit", async () => {
  const server = new FakeServer();
  assert.equal(await repairBlock(editorAt([1, 4]), server), "applied");
  assert.deepEqual(
    server.calls.map((c) => c.method),
    ["textDocument/codeAction", "codeAction/resolve"],
  );
  assert.equal(server.calls[0].params.textDocument.uri, "file:///w/a.py");
  assert.deepEqual(server.calls[0].params.range.start, { line: 1, character: 4 });
  assert.equal(server.calls[1].params.title, REPAIR_TITLE); // resolve gets the action back
  assert.equal(mock.appliedEdits.length, 1);
  // the server's edit, each entry marked for VS Code's Refactor Preview (a diff to accept)
  const [applied] = mock.appliedEdits[0].edits;
  assert.equal(applied.edit.newText, " 1");
  assert.deepEqual([applied.edit.range.start.line, applied.edit.range.start.character], [1, 14]);
  assert.equal(applied.metadata?.needsConfirmation, true);
  assert.equal(applied.metadata?.label, REPAIR_TITLE);
  assert.deepEqual(mock.progress, ["Diffusion LSP: repairing"]);
});

test("an action that already carries its edit is not resolved again", async () => {
  const server = new FakeServer([{ title: REPAIR_TITLE, edit: EDIT }]);
  assert.equal(await repairBlock(editorAt([0, 0]), server), "applied");
  assert.equal(server.calls.length, 1);
});

test("no action, a disabled action, no change, errors and rejected edits are reported", async () => {
  assert.equal(await repairBlock(editorAt([0, 0]), new FakeServer([])), "no-action");
  assert.match(mock.messages.at(-1)!.text, /no repair offered/);

  const disabled = new FakeServer([{ title: REPAIR_TITLE, disabled: { reason: "the block has 900 tokens" } }]);
  assert.equal(await repairBlock(editorAt([0, 0]), disabled), "disabled");
  assert.match(mock.messages.at(-1)!.text, /900 tokens/);
  assert.equal(disabled.calls.length, 1);

  const same = new FakeServer(undefined, { title: REPAIR_TITLE, edit: { changes: {} } });
  assert.equal(await repairBlock(editorAt([0, 0]), same), "no-change");
  assert.equal(mock.appliedEdits.length, 0);

  assert.equal(await repairBlock(editorAt([0, 0]), new FakeServer(undefined, undefined, "no model")), "failed");
  assert.match(mock.messages.at(-1)!.text, /repair failed: no model/);
  assert.equal(mock.messages.at(-1)!.level, "error");

  mock.applyEditResult = false;
  assert.equal(await repairBlock(editorAt([0, 0]), new FakeServer()), "rejected");
  assert.equal(mock.messages.at(-1)!.level, "warning");
});
