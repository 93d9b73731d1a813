// Calls beside the reconcile loop (reconciler/dependencies/beside.ts) and the dependencies they
// report to (reconciler/dependencies/status.ts): a pass never waits for a call, a call is made once
// per key until its outcome is read, a call that hangs past its deadline is aborted and fails,
// and the dependency says up, down and what waits for it.
import { describe, expect, test } from "bun:test";
import { Dependencies } from "../reconciler/dependencies/status.ts";
import { BesideCalls, CallDeadlineError } from "../reconciler/dependencies/beside.ts";

describe("calls beside the loop", () => {
  test("an in-process call answers within the asking pass; one that waits on I/O is handed out later, once, and the loop is woken", async () => {
    let wakes = 0;
    const calls = new BesideCalls({ wake: () => wakes++ });
    expect(await calls.run("instant", async () => 42)).toEqual({ settled: true, ok: true, value: 42 });

    let answer: (v: string) => void = () => undefined;
    let made = 0;
    const slow = () => {
      made++;
      return new Promise<string>((resolve) => (answer = resolve));
    };
    const first = await calls.run("slow", slow);
    expect(first.settled).toBe(false);
    // Asked again while it runs: the same call, never a second one.
    expect((await calls.run("slow", slow)).settled).toBe(false);
    expect(made).toBe(1);
    const woken = wakes;
    answer("done");
    await Bun.sleep(0);
    expect(wakes).toBe(woken + 1);
    expect(await calls.run("slow", slow)).toEqual({ settled: true, ok: true, value: "done" });
    // Handed out once: the next ask is a new call.
    expect((await calls.run("slow", slow)).settled).toBe(false);
    expect(made).toBe(2);
    calls.stop();
  });

  test("a call that hangs past its deadline is aborted and fails; the dependency is down with the error, and says what waits", async () => {
    const lines: string[] = [];
    const deps = new Dependencies({ log: (l) => lines.push(l) });
    const api = deps.add("provider:lambda", "the lambda provider's API", "providers.lambda");
    const calls = new BesideCalls({ wake: () => undefined });
    api.queuedBy(() => calls.waitingFor(api));
    expect(api.status()).toMatchObject({ state: "unknown", lastSuccessAt: null, lastError: null, queuedCount: 0 });

    let aborted: unknown;
    const hang = (signal: AbortSignal) =>
      new Promise<never>(() => {
        signal.addEventListener("abort", () => (aborted = signal.reason));
      });
    expect((await calls.run("launch:n1", hang, { deadlineMs: 200, dependency: api, action: "launch", node: "n1" })).settled).toBe(false);
    expect(api.status()).toMatchObject({ queuedCount: 1, queued: [expect.objectContaining({ action: "launch", node: "n1" })] });
    await Bun.sleep(300);
    const outcome = await calls.run("launch:n1", hang);
    expect(outcome).toMatchObject({ settled: true, ok: false });
    expect((outcome as { error: unknown }).error).toBeInstanceOf(CallDeadlineError);
    expect(aborted).toBeInstanceOf(CallDeadlineError);
    expect(api.status()).toMatchObject({ state: "down", queuedCount: 0, lastError: { message: "launch: no answer within 200 ms" } });
    expect(api.waiting()).toMatch(/^waiting for the lambda provider's API \(unreachable\) since \d{4}-\d\d-\d\dT.*Z \(launch: no answer within 200 ms\)$/);
    expect(lines).toEqual(["dependency provider:lambda (the lambda provider's API at providers.lambda) is down: launch: no answer within 200 ms"]);

    // A refusal is an answer (the API is up); an outage is not.
    let back = 0;
    api.whenBack(() => back++);
    const refused = new Error("no capacity");
    await calls.run("launch:n2", async () => Promise.reject(refused), { dependency: api, isOutage: (e) => e !== refused });
    expect(api.current).toBe("up");
    expect(back).toBe(1);
    expect(lines.at(-1)).toBe("dependency provider:lambda (the lambda provider's API at providers.lambda) answers again");
  });
});
