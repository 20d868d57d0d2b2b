// Language client middleware: keeps client-only settings away from the server and tells
// the status bar when a model request finished. No vscode-languageclient import here (types
// only), so it is unit-tested with the mocked `vscode` module.

import type { CancellationToken } from "vscode";
import type { Middleware } from "vscode-languageclient";

import { REPAIR_TITLE, withPreview } from "./repair";
import { filterServerSection, SECTION } from "./settings";

type ConfigurationParams = { items: Array<{ section?: string; scopeUri?: string }> };

/**
 * Answers workspace/configuration with only the server's keys of the `diffusionLsp`
 * section (the `server.*`, `languages`, `trace` keys are the client's own).
 */
export async function filterConfigurationResult(
  params: ConfigurationParams,
  result: unknown,
): Promise<unknown> {
  if (!Array.isArray(result)) {
    return result;
  }
  return result.map((value, i) =>
    params.items[i]?.section === SECTION ? filterServerSection(value) : value,
  );
}

/** The diagnostics' `source` the server publishes (lsp_server/diagnostics.py). */
export const DIAGNOSTIC_SOURCE = "diffusion-lsp";

type RangeLike = { isEmpty?: boolean };
type ContextLike = { diagnostics?: ReadonlyArray<{ source?: string }> };

/**
 * Whether VS Code should ask the server for "Repair this block": on a selection, or when
 * one of our diagnostics is under the cursor (its quick fix). Not on every line: the
 * lightbulb asks at every cursor move. The explicit "Repair this block" command
 * (repair.ts) sends its own request and is not filtered.
 */
export function wantsRepairAction(range: RangeLike | undefined, context: ContextLike | undefined): boolean {
  if (range !== undefined && range.isEmpty === false) {
    return true;
  }
  return (context?.diagnostics ?? []).some((d) => d.source === DIAGNOSTIC_SOURCE);
}

export type RequestKind = "completion" | "inlineCompletion" | "codeAction";

/** Called when a model request finished: its kind, wall time seen by the editor, success. */
export type RequestDone = (kind: RequestKind, ms: number, ok: boolean) => void;

/** Called when a model request is sent (the status bar's in-progress indicator). */
export type RequestStart = (kind: RequestKind) => void;

async function timed<T>(
  kind: RequestKind,
  run: () => T | Thenable<T>,
  done: RequestDone,
  start?: RequestStart,
): Promise<T> {
  start?.(kind);
  const t0 = performance.now();
  let ok = false;
  try {
    const result = await run();
    ok = true;
    return result;
  } finally {
    done(kind, performance.now() - t0, ok);
  }
}

/**
 * The middleware: reports the start and end of every completion, inline completion and
 * code action request (the status bar shows a request in flight and the last latency) and
 * filters workspace/configuration answers.
 */
export function createMiddleware(onRequestDone: RequestDone, onRequestStart?: RequestStart): Middleware {
  const done = onRequestDone;
  const start = onRequestStart;
  return {
    provideCompletionItem: (document, position, context, token, next) =>
      timed("completion", () => next(document, position, context, token), done, start),
    provideInlineCompletionItems: (document, position, context, token, next) =>
      timed("inlineCompletion", () => next(document, position, context, token), done, start),
    provideCodeActions: (document, range, context, token, next) =>
      wantsRepairAction(range, context)
        ? timed("codeAction", () => next(document, range, context, token), done, start)
        : Promise.resolve([]),
    // "Repair this block" from the lightbulb: the model runs in resolve; its edit is
    // previewed as a diff (Refactor Preview) before VS Code applies it, as for the command
    resolveCodeAction: async (item, token, next) => {
      const resolved = await next(item, token);
      if (resolved?.edit !== undefined && resolved.title === REPAIR_TITLE) {
        resolved.edit = withPreview(resolved.edit);
      }
      return resolved;
    },
    workspace: {
      configuration: async (params, token: CancellationToken, next) => {
        const result = await next(params, token);
        return filterConfigurationResult(params, result) as ReturnType<typeof next>;
      },
    },
  } as Middleware;
}
