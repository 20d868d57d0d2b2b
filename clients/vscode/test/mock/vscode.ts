// A hand-written stand-in for the `vscode` module: just the API the extension uses, with
// recorders the tests inspect (`mock`). test/setup.ts routes `require("vscode")` here.

/* eslint-disable @typescript-eslint/no-explicit-any */

export class Disposable {
  constructor(private readonly fn: () => void = () => undefined) {}
  static from(...items: Array<{ dispose(): unknown }>): Disposable {
    return new Disposable(() => items.forEach((i) => i.dispose()));
  }
  dispose(): void {
    this.fn();
  }
}

export class EventEmitter<T> {
  private listeners: Array<(e: T) => unknown> = [];
  event = (listener: (e: T) => unknown): Disposable => {
    this.listeners.push(listener);
    return new Disposable(() => {
      this.listeners = this.listeners.filter((l) => l !== listener);
    });
  };
  fire(e: T): void {
    for (const l of [...this.listeners]) {
      l(e);
    }
  }
  dispose(): void {
    this.listeners = [];
  }
}

export class Position {
  constructor(
    readonly line: number,
    readonly character: number,
  ) {}
  isEqual(other: Position): boolean {
    return this.line === other.line && this.character === other.character;
  }
}

export class Range {
  readonly start: Position;
  readonly end: Position;
  constructor(a: Position | number, b: Position | number, c?: number, d?: number) {
    let p = typeof a === "number" ? new Position(a, b as number) : a;
    let q = typeof a === "number" ? new Position(c as number, d as number) : (b as Position);
    if (q.line < p.line || (q.line === p.line && q.character < p.character)) {
      [p, q] = [q, p]; // like VS Code: start is never after end
    }
    this.start = p;
    this.end = q;
  }
  get isEmpty(): boolean {
    return this.start.isEqual(this.end);
  }
}

export class Selection extends Range {
  constructor(
    readonly anchor: Position,
    readonly active: Position,
  ) {
    super(anchor, active);
  }
  get isReversed(): boolean {
    return this.anchor !== this.start;
  }
}

export class Uri {
  private constructor(
    readonly scheme: string,
    readonly fsPath: string,
  ) {}
  static file(p: string): Uri {
    return new Uri("file", p);
  }
  toString(): string {
    return `${this.scheme}://${this.fsPath}`;
  }
}

export class TextEdit {
  constructor(
    readonly range: Range,
    readonly newText: string,
  ) {}
}

export class WorkspaceEdit {
  readonly edits: Array<{ uri: Uri; edit: TextEdit; metadata?: { needsConfirmation: boolean; label: string } }> = [];
  replace(uri: Uri, range: Range, newText: string, metadata?: { needsConfirmation: boolean; label: string }): void {
    this.edits.push({ uri, edit: new TextEdit(range, newText), metadata });
  }
  entries(): Array<[Uri, TextEdit[]]> {
    const out = new Map<Uri, TextEdit[]>();
    for (const e of this.edits) {
      out.set(e.uri, [...(out.get(e.uri) ?? []), e.edit]);
    }
    return [...out.entries()];
  }
}

export class CodeActionKind {
  static readonly QuickFix = new CodeActionKind("quickfix");
  static readonly RefactorRewrite = new CodeActionKind("refactor.rewrite");
  constructor(readonly value: string) {}
}

export class CodeAction {
  edit?: WorkspaceEdit;
  command?: { command: string; title: string; arguments?: unknown[] };
  disabled?: { reason: string };
  constructor(
    readonly title: string,
    readonly kind?: CodeActionKind,
  ) {}
}

export class ThemeColor {
  constructor(readonly id: string) {}
}

export enum StatusBarAlignment {
  Left = 1,
  Right = 2,
}

export enum ConfigurationTarget {
  Global = 1,
  Workspace = 2,
  WorkspaceFolder = 3,
}

export enum ProgressLocation {
  SourceControl = 1,
  Window = 10,
  Notification = 15,
}

export class MockStatusBarItem {
  text = "";
  tooltip: string | undefined;
  name: string | undefined;
  command: string | undefined;
  backgroundColor: ThemeColor | undefined;
  visible = false;
  disposed = false;
  show(): void {
    this.visible = true;
  }
  hide(): void {
    this.visible = false;
  }
  dispose(): void {
    this.disposed = true;
  }
}

export class MockOutputChannel {
  lines: string[] = [];
  shown = false;
  constructor(readonly name: string) {}
  appendLine(line: string): void {
    this.lines.push(line);
  }
  append(text: string): void {
    this.lines.push(text);
  }
  show(): void {
    this.shown = true;
  }
  clear(): void {
    this.lines = [];
  }
  dispose(): void {}
}

/** A minimal text document over a string. */
export class MockTextDocument {
  version = 1;
  constructor(
    readonly uri: Uri,
    public text: string,
    readonly languageId = "python",
  ) {}
  lineAt(line: number): { text: string; range: Range } {
    const text = this.text.split("\n")[line] ?? "";
    return { text, range: new Range(line, 0, line, text.length) };
  }
  getText(): string {
    return this.text;
  }
}

type CommandHandler = (...args: any[]) => any;

/** Recorders and knobs for tests. */
export const mock = {
  settings: new Map<string, unknown>(),
  commands: new Map<string, CommandHandler>(),
  executed: [] as Array<{ command: string; args: unknown[] }>,
  messages: [] as Array<{ level: "info" | "warning" | "error"; text: string }>,
  appliedEdits: [] as WorkspaceEdit[],
  progress: [] as string[],
  applyEditResult: true,
  statusBarItems: [] as MockStatusBarItem[],
  /** What showQuickPick / showInputBox / showErrorMessage answer (undefined: dismissed). */
  quickPick: undefined as undefined | ((items: any[]) => any),
  inputBox: undefined as string | undefined,
  errorChoice: undefined as string | undefined,
  cancelProgress: false,
  configChanged: new EventEmitter<{ affectsConfiguration(section: string): boolean }>(),
  reset(): void {
    this.settings.clear();
    this.commands.clear();
    this.executed = [];
    this.messages = [];
    this.appliedEdits = [];
    this.progress = [];
    this.applyEditResult = true;
    this.statusBarItems = [];
    this.quickPick = undefined;
    this.inputBox = undefined;
    this.errorChoice = undefined;
    this.cancelProgress = false;
    this.configChanged = new EventEmitter();
    window.activeTextEditor = undefined;
  },
  /** Fires onDidChangeConfiguration for the given full keys (e.g. "diffusionLsp.device"). */
  changeSettings(values: Record<string, unknown>): void {
    for (const [k, v] of Object.entries(values)) {
      this.settings.set(k, v);
    }
    const keys = Object.keys(values);
    this.configChanged.fire({
      affectsConfiguration: (section: string) =>
        keys.some((k) => k === section || k.startsWith(`${section}.`)),
    });
  },
};

export const window = {
  activeTextEditor: undefined as any,
  createStatusBarItem(): MockStatusBarItem {
    const item = new MockStatusBarItem();
    mock.statusBarItems.push(item);
    return item;
  },
  createOutputChannel(name: string): MockOutputChannel {
    return new MockOutputChannel(name);
  },
  async withProgress<T>(
    options: { location: ProgressLocation; title?: string },
    task: (
      progress: { report(v: { message?: string }): void },
      token: { isCancellationRequested: boolean },
    ) => Promise<T>,
  ): Promise<T> {
    mock.progress.push(options.title ?? "");
    const token = {
      get isCancellationRequested() {
        return mock.cancelProgress;
      },
    };
    return task({ report: (v) => mock.progress.push(v.message ?? "") }, token);
  },
  async showQuickPick(items: any[]): Promise<any> {
    return mock.quickPick?.(items);
  },
  async showInputBox(): Promise<string | undefined> {
    return mock.inputBox;
  },
  showInformationMessage(text: string): Promise<undefined> {
    mock.messages.push({ level: "info", text });
    return Promise.resolve(undefined);
  },
  showWarningMessage(text: string): Promise<undefined> {
    mock.messages.push({ level: "warning", text });
    return Promise.resolve(undefined);
  },
  showErrorMessage(text: string, ..._choices: string[]): Promise<string | undefined> {
    mock.messages.push({ level: "error", text });
    return Promise.resolve(mock.errorChoice);
  },
};

export const commands = {
  registerCommand(command: string, handler: CommandHandler): Disposable {
    mock.commands.set(command, handler);
    return new Disposable(() => mock.commands.delete(command));
  },
  async executeCommand(command: string, ...args: unknown[]): Promise<unknown> {
    mock.executed.push({ command, args });
    const handler = mock.commands.get(command);
    return handler === undefined ? undefined : handler(...args);
  },
};

export const workspace = {
  workspaceFolders: undefined as undefined | Array<{ uri: Uri }>,
  getConfiguration(section?: string) {
    const prefix = section === undefined ? "" : `${section}.`;
    return {
      get<T>(key: string, defaultValue?: T): T | undefined {
        const full = `${prefix}${key}`;
        return mock.settings.has(full) ? (mock.settings.get(full) as T) : defaultValue;
      },
      has(key: string): boolean {
        return mock.settings.has(`${prefix}${key}`);
      },
      /** Sets the value (any target) and fires onDidChangeConfiguration, as VS Code does. */
      async update(key: string, value: unknown, _target?: ConfigurationTarget): Promise<void> {
        mock.changeSettings({ [`${prefix}${key}`]: value });
      },
    };
  },
  onDidChangeConfiguration(listener: (e: any) => unknown): Disposable {
    return mock.configChanged.event(listener);
  },
  async applyEdit(edit: WorkspaceEdit): Promise<boolean> {
    if (mock.applyEditResult) {
      mock.appliedEdits.push(edit);
    }
    return mock.applyEditResult;
  },
};
