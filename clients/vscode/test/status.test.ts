import * as assert from "node:assert/strict";
import { beforeEach, test } from "node:test";

import { formatStatus, parseStatus, StatusController } from "../src/status";
import { mock } from "./mock/vscode";

beforeEach(() => mock.reset());

test("parseStatus reads the server's status object", () => {
  const server = {
    server: { name: "diffusion-lsp", version: "0.1.0" },
    model: { path: "/m", hash: "ab", kind: "diffusion", parameters: 10, device: "cpu" },
    model_error: null,
    loading: false,
    completion_latency_ms: { p50: 41.6, p95: 80, n: 3 },
  };
  const a = parseStatus(server);
  assert.deepEqual(
    [a.modelLoaded, a.loading, a.device, a.serverLatencyMs, a.model, a.modelError],
    [true, false, "cpu", 41.6, "/m", undefined],
  );
  const loading = parseStatus({ ...server, model: null, loading: true, completion_latency_ms: { p50: null } });
  assert.deepEqual([loading.modelLoaded, loading.loading, loading.serverLatencyMs], [false, true, undefined]);
  const failed = parseStatus({ ...server, model: null, model_error: "no such dir" });
  assert.deepEqual([failed.modelLoaded, failed.modelError], [false, "no such dir"]);
});

test("parseStatus accepts flat keys and ignores junk", () => {
  const b = parseStatus({ model_loaded: true, device: "cuda", last_latency_ms: "12" });
  assert.deepEqual([b.modelLoaded, b.device, b.serverLatencyMs], [true, "cuda", 12]);
  const d = parseStatus("nonsense");
  assert.deepEqual([d.modelLoaded, d.device, d.serverLatencyMs], [undefined, undefined, undefined]);
});

test("formatStatus shows device and latency, loading, and a failed model", () => {
  const ok = parseStatus({ model: { device: "cpu" }, loading: false, completion_latency_ms: { p50: 41.6 } });
  const ready = formatStatus("running", ok);
  assert.equal(ready.text, "$(sparkle) Diffusion: cpu · 42 ms");
  assert.match(ready.tooltip, /model loaded: yes/);
  assert.match(ready.tooltip, /median\): 42 ms/);
  // the client-measured last latency wins over the server's median
  assert.equal(formatStatus("running", ok, undefined, 7.2).text, "$(sparkle) Diffusion: cpu · 7 ms");
  const loading = formatStatus("running", parseStatus({ model: null, loading: true }));
  assert.equal(loading.text, "$(loading~spin) Diffusion: loading model");
  const bad = formatStatus("running", parseStatus({ model: null, loading: false, model_error: "bad dir" }));
  assert.equal(bad.text, "$(warning) Diffusion: no model");
  assert.match(bad.tooltip, /model error: bad dir/);
  assert.match(formatStatus("error", undefined, "boom").tooltip, /boom/);
  assert.match(formatStatus("stopped", undefined).text, /circle-slash/);
});

test("StatusController refreshes from the server and coalesces requests", async () => {
  let calls = 0;
  let release: () => void = () => undefined;
  const gate = new Promise<void>((r) => (release = r));
  const ctl = new StatusController(async () => {
    calls += 1;
    await gate;
    return { model: { device: "cpu" }, completion_latency_ms: { p50: calls } };
  }, "x.show");
  const item = mock.statusBarItems[0];
  assert.equal(item.command, "x.show");
  assert.equal(item.visible, true);

  await ctl.refresh(); // not running: no request
  assert.equal(calls, 0);

  ctl.setState("running");
  const first = ctl.refresh();
  const second = ctl.refresh(); // queued behind the first
  const third = ctl.refresh(); // merged with the second
  release();
  await Promise.all([first, second, third]);
  assert.equal(calls, 2);
  assert.equal(item.text, "$(sparkle) Diffusion: cpu · 2 ms");
  ctl.dispose();
  assert.equal(item.disposed, true);
});

test("StatusController keeps the last status and reports a failed request", async () => {
  let fail = false;
  const ctl = new StatusController(async () => {
    if (fail) {
      throw new Error("timeout");
    }
    return { model: { device: "cpu" } };
  }, "x");
  ctl.setState("running");
  await ctl.refresh();
  fail = true;
  await ctl.refresh();
  const item = mock.statusBarItems[0];
  assert.equal(item.text, "$(sparkle) Diffusion: cpu");
  assert.match(String(item.tooltip), /status request failed: timeout/);
  ctl.setState("error", "crashed");
  assert.equal(item.text, "$(error) Diffusion");
  assert.equal(item.backgroundColor?.id, "statusBarItem.errorBackground");
});

test("the status bar spins while model requests are in flight", () => {
  const ok = parseStatus({ model: { device: "cpu" } });
  const busy = formatStatus("running", ok, undefined, 7, 2);
  assert.equal(busy.text, "$(sync~spin) Diffusion: cpu · 7 ms");
  assert.match(busy.tooltip, /working: 2 requests in flight/);
  assert.equal(formatStatus("running", ok, undefined, 7, 0).text, "$(sparkle) Diffusion: cpu · 7 ms");
  assert.match(formatStatus("error", undefined, "boom", undefined, 3).text, /\$\(error\)/);

  const ctl = new StatusController(async () => ({ model: { device: "cpu" } }), "x");
  const item = mock.statusBarItems[mock.statusBarItems.length - 1];
  ctl.setState("running");
  ctl.requestStarted();
  ctl.requestStarted();
  assert.match(item.text, /^\$\(sync~spin\)/);
  ctl.requestFinished();
  assert.equal(ctl.inFlightRequests, 1);
  assert.match(item.text, /^\$\(sync~spin\)/);
  ctl.requestFinished();
  ctl.requestFinished(); // never below zero
  assert.equal(ctl.inFlightRequests, 0);
  assert.match(item.text, /^\$\(sparkle\)/);
  ctl.requestStarted();
  ctl.setState("stopped"); // a stopped server answers nothing more
  assert.equal(ctl.inFlightRequests, 0);
  ctl.dispose();
});
