// Entry point: one output channel, one controller, one language client.

import * as vscode from "vscode";

import { CLIENT_NAME, createLanguageClient } from "./client";
import { Controller } from "./controller";

let controller: Controller | undefined;

export async function activate(context: vscode.ExtensionContext): Promise<void> {
  const output = vscode.window.createOutputChannel(CLIENT_NAME);
  const storage = context.globalStorageUri.fsPath;
  controller = new Controller(
    (out, done, start) => createLanguageClient(out, done, start, storage),
    output,
    storage,
  );
  context.subscriptions.push(output, controller);
  await controller.start();
}

export async function deactivate(): Promise<void> {
  await controller?.stop();
  controller = undefined;
}
