// Retry delays: doubling, jittered, and held under a ceiling that lets spooled events reach a
// returning reconciler within 5 s, however long it was away.
import { describe, expect, test } from "bun:test";
import { Backoff, RETRY_MAX_MS } from "../agent/backoff.ts";

describe("back-off", () => {
  test("doubles from its floor, each delay in the upper half of its step", () => {
    const low = new Backoff({ minMs: 250, maxMs: 4000, random: () => 0 });
    const high = new Backoff({ minMs: 250, maxMs: 4000, random: () => 0.999999 });
    expect(Array.from({ length: 7 }, () => Math.round(low.fail()))).toEqual([125, 250, 500, 1000, 2000, 2000, 2000]);
    expect(Array.from({ length: 7 }, () => Math.round(high.fail()))).toEqual([250, 500, 1000, 2000, 4000, 4000, 4000]);
  });

  test("the default ceiling: after any outage the next attempt is at most 4 s away", () => {
    const b = new Backoff({ random: () => 1 });
    let worst = 0;
    for (let i = 0; i < 1000; i++) worst = Math.max(worst, b.fail());
    expect(worst).toBe(RETRY_MAX_MS);
    expect(RETRY_MAX_MS).toBeLessThanOrEqual(4000);
  });

  test("a success starts over", () => {
    const b = new Backoff({ minMs: 100, maxMs: 1000, random: () => 1 });
    for (let i = 0; i < 10; i++) b.fail();
    b.succeed();
    expect(b.count).toBe(0);
    expect(b.fail()).toBe(100);
  });
});
