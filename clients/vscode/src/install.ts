// Getting the server (issue 22): when no server is found, the extension offers to create a
// private virtual environment in its global storage and install diffusion-lsp there, with
// the torch build the user picks (the CPU build by default: PyPI's default torch on Linux
// and Windows is a CUDA build of several GB). The plan is pure data and the process runner
// is injected, so everything here is unit-tested without VS Code or a network.

import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

export type TorchBuild = "cpu" | "default" | "none";

export interface Step {
  title: string;
  command: string;
  args: string[];
}

/** PyTorch's own index of CPU-only wheels. */
export const CPU_TORCH_INDEX = "https://download.pytorch.org/whl/cpu";

/** The pip requirement installed by default (a wheel path or a VCS URL also work). */
export const DEFAULT_REQUIREMENT = "diffusion-lsp";

/** The private environment's folder inside the extension's global storage. */
export function venvDir(storageDir: string): string {
  return path.join(storageDir, "server-venv");
}

export function venvPython(dir: string, platform: NodeJS.Platform = process.platform): string {
  return platform === "win32" ? path.join(dir, "Scripts", "python.exe") : path.join(dir, "bin", "python");
}

/** The private environment's Python, if an install finished there (its marker exists). */
export function installedPython(
  storageDir: string | undefined,
  platform: NodeJS.Platform = process.platform,
  exists: (p: string) => boolean = fs.existsSync,
): string | undefined {
  if (storageDir === undefined) {
    return undefined;
  }
  const dir = venvDir(storageDir);
  const python = venvPython(dir, platform);
  return exists(python) && exists(path.join(dir, INSTALLED_MARKER)) ? python : undefined;
}

/** Written last, so a half-finished install is never used (the next install redoes it). */
export const INSTALLED_MARKER = "diffusion-lsp-installed";

/** Interpreters to try for creating the environment, best first (3.11+ is required). */
export function pythonCandidates(platform: NodeJS.Platform = process.platform): string[][] {
  return platform === "win32"
    ? [["py", "-3"], ["python"], ["python3"]]
    : [["python3.13"], ["python3.12"], ["python3.11"], ["python3"], ["python"]];
}

export const VERSION_CHECK = "import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)";

/** Runs a command; resolves with its exit code, rejects when it cannot be started. */
export type Runner = (command: string, args: string[], onOutput: (line: string) => void) => Promise<number>;

/** The first candidate that runs and is Python 3.11 or newer, or undefined. */
export async function findPython(
  run: Runner,
  platform: NodeJS.Platform = process.platform,
): Promise<string[] | undefined> {
  for (const candidate of pythonCandidates(platform)) {
    const [command, ...prefix] = candidate;
    try {
      if ((await run(command, [...prefix, "-c", VERSION_CHECK], () => undefined)) === 0) {
        return candidate;
      }
    } catch {
      // not installed: try the next one
    }
  }
  return undefined;
}

/** The steps of an install into `dir` with the interpreter `python` (command + prefix args). */
export function installSteps(
  python: string[],
  dir: string,
  torch: TorchBuild,
  requirement: string = DEFAULT_REQUIREMENT,
  platform: NodeJS.Platform = process.platform,
): Step[] {
  const [command, ...prefix] = python;
  const py = venvPython(dir, platform);
  const pip = (...args: string[]) => ({ command: py, args: ["-m", "pip", "install", ...args] });
  const steps: Step[] = [
    { title: "creating a virtual environment", command, args: [...prefix, "-m", "venv", dir] },
    { title: "updating pip", ...pip("--upgrade", "pip") },
  ];
  if (torch === "cpu") {
    // macOS wheels on PyPI are CPU builds already; elsewhere the CPU index avoids CUDA
    const index = platform === "darwin" ? [] : ["--index-url", CPU_TORCH_INDEX];
    steps.push({ title: "installing torch (CPU build)", ...pip("torch", ...index) });
  } else if (torch === "default") {
    steps.push({ title: "installing torch (PyPI's default build)", ...pip("torch") });
  }
  steps.push({ title: `installing ${requirement}`, ...pip(requirement) });
  // -P: not the working directory on sys.path (as the server is started)
  steps.push({ title: "checking the server", command: py, args: ["-P", "-c", "import lsp_server.cli"] });
  return steps;
}

export interface InstallResult {
  ok: boolean;
  failed?: Step;
  code?: number;
  error?: string;
  cancelled?: boolean;
}

/**
 * Runs the steps in order and stops at the first failure; `report` sees each step before it
 * runs, `cancelled` is checked between steps. On success, writes the installed marker.
 */
export async function runInstall(
  steps: Step[],
  dir: string,
  run: Runner,
  report: (step: Step, index: number, total: number) => void,
  onOutput: (line: string) => void,
  cancelled: () => boolean = () => false,
  writeMarker: (p: string) => void = (p) => {
    fs.mkdirSync(path.dirname(p), { recursive: true });
    fs.writeFileSync(p, "ok\n");
  },
): Promise<InstallResult> {
  for (const [i, step] of steps.entries()) {
    if (cancelled()) {
      return { ok: false, cancelled: true };
    }
    report(step, i, steps.length);
    onOutput(`[install] ${step.command} ${step.args.join(" ")}`);
    let code: number;
    try {
      code = await run(step.command, step.args, onOutput);
    } catch (err) {
      return { ok: false, failed: step, error: err instanceof Error ? err.message : String(err) };
    }
    if (code !== 0) {
      return { ok: false, failed: step, code };
    }
  }
  writeMarker(path.join(dir, INSTALLED_MARKER));
  return { ok: true };
}

/** The spawn-based runner: output lines go to `onOutput`, no shell. */
export function spawnRunner(): Runner {
  return (command, args, onOutput) =>
    new Promise((resolve, reject) => {
      const child = spawn(command, args, { shell: false, windowsHide: true });
      let rest = "";
      const take = (chunk: Buffer) => {
        const lines = (rest + chunk.toString()).split(/\r?\n/);
        rest = lines.pop() ?? "";
        lines.forEach(onOutput);
      };
      child.stdout.on("data", take);
      child.stderr.on("data", take);
      child.on("error", reject);
      child.on("close", (code) => {
        if (rest !== "") {
          onOutput(rest);
        }
        resolve(code ?? 1);
      });
    });
}
