// The "Repair this block" command. The lightbulb shows the server's action through the
// language client itself; this command asks our server directly (not every provider), so
// the action is found and resolved the same way whatever else is installed:
// textDocument/codeAction at the selection -> codeAction/resolve (the model runs there) ->
// preview -> apply the WorkspaceEdit. Every text edit is marked `needsConfirmation`, so
// VS Code opens its Refactor Preview (a diff of the block) and applies the repair only
// when the user accepts it there.

import * as vscode from "vscode";

export const REPAIR_TITLE = "Repair this block";

export type RepairOutcome = "applied" | "no-change" | "no-action" | "disabled" | "rejected" | "failed";

/** The part of the language client the repair needs. */
export interface RepairClient {
  sendRequest(method: string, params: unknown): Promise<unknown>;
  /** Converts an LSP WorkspaceEdit to VS Code's (client.protocol2CodeConverter). */
  asWorkspaceEdit(edit: unknown): Promise<vscode.WorkspaceEdit>;
}

/** The LSP CodeAction fields used here. */
interface LspCodeAction {
  title: string;
  kind?: string;
  edit?: LspWorkspaceEdit;
  command?: { command: string; arguments?: unknown[] };
  disabled?: { reason: string };
  data?: unknown;
}

interface LspWorkspaceEdit {
  changes?: Record<string, unknown[]>;
  documentChanges?: Array<{ edits?: unknown[] }>;
}

/**
 * The LSP range sent to the server: the selection, or the empty range at the cursor, in
 * which case the server picks the enclosing block itself.
 */
export function lspRange(selection: vscode.Selection): {
  start: { line: number; character: number };
  end: { line: number; character: number };
} {
  return {
    start: { line: selection.start.line, character: selection.start.character },
    end: { line: selection.end.line, character: selection.end.character },
  };
}

/** Finds the server's repair action among code actions and commands (LSP JSON). */
export function findRepairAction(items: unknown): LspCodeAction | undefined {
  if (!Array.isArray(items)) {
    return undefined;
  }
  for (const item of items) {
    // A Command has `command: string`; a CodeAction has `command?: Command`.
    if (
      item !== null &&
      typeof item === "object" &&
      item.title === REPAIR_TITLE &&
      typeof item.command !== "string"
    ) {
      return item as LspCodeAction;
    }
  }
  return undefined;
}

/** Number of text edits in an LSP WorkspaceEdit (0: the server proposes no change). */
export function countTextEdits(edit: LspWorkspaceEdit | undefined): number {
  if (edit === undefined || edit === null) {
    return 0;
  }
  let n = 0;
  for (const edits of Object.values(edit.changes ?? {})) {
    n += edits.length;
  }
  for (const change of edit.documentChanges ?? []) {
    n += change.edits?.length ?? 1; // file operations count as one change
  }
  return n;
}

/** The same text edits, each marked for confirmation: VS Code previews them as a diff. */
export function withPreview(edit: vscode.WorkspaceEdit): vscode.WorkspaceEdit {
  const preview = new vscode.WorkspaceEdit();
  const metadata = { needsConfirmation: true, label: REPAIR_TITLE, description: "diffusion-lsp" };
  for (const [uri, edits] of edit.entries()) {
    for (const e of edits) {
      preview.replace(uri, e.range, e.newText, metadata);
    }
  }
  return preview;
}

function message(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Runs the repair at the editor's selection. Tells the user when nothing was done. */
export async function repairBlock(
  editor: vscode.TextEditor,
  client: RepairClient,
): Promise<RepairOutcome> {
  const document = editor.document;
  const params = {
    textDocument: { uri: document.uri.toString() },
    range: lspRange(editor.selection),
    context: { diagnostics: [], triggerKind: 1 /* Invoked */ },
  };
  return vscode.window.withProgress(
    { location: vscode.ProgressLocation.Window, title: "Diffusion LSP: repairing" },
    async () => {
      let action: LspCodeAction | undefined;
      try {
        action = findRepairAction(await client.sendRequest("textDocument/codeAction", params));
        if (action !== undefined && action.disabled === undefined && action.edit === undefined) {
          action = (await client.sendRequest("codeAction/resolve", action)) as LspCodeAction;
        }
      } catch (err) {
        void vscode.window.showErrorMessage(`Diffusion LSP: repair failed: ${message(err)}`);
        return "failed";
      }
      if (action === undefined) {
        void vscode.window.showInformationMessage(
          "Diffusion LSP: no repair offered here (is the repair setting on and the model loaded?).",
        );
        return "no-action";
      }
      if (action.disabled !== undefined) {
        void vscode.window.showWarningMessage(`Diffusion LSP: ${action.disabled.reason}`);
        return "disabled";
      }
      if (countTextEdits(action.edit) === 0) {
        return "no-change"; // the server says so itself (window/showMessage)
      }
      const edit = withPreview(await client.asWorkspaceEdit(action.edit));
      if (!(await vscode.workspace.applyEdit(edit))) {
        void vscode.window.showWarningMessage(
          "Diffusion LSP: the repair was not applied (discarded in the preview, or the document changed).",
        );
        return "rejected";
      }
      if (action.command !== undefined) {
        await vscode.commands.executeCommand(
          action.command.command,
          ...(action.command.arguments ?? []),
        );
      }
      return "applied";
    },
  );
}
