// schema/accept.ts: the fast yes may only say yes where valibot does, with the value as
// valibot would return it. Checked over many bodies mutated at random from valid ones (a
// seeded generator: a failure names its seed and case), and the hot schemas must compile, or
// the API would quietly lose the fast path.
import { describe, expect, test } from "bun:test";
import * as v from "valibot";
import { accepts } from "../schema/accept.ts";
import { EventBatch, Heartbeat, ONE_ISSUE_PER_VALUE, RegisterRequest } from "../schema/wire.ts";
import { Random } from "../reconciler/sim/random.ts";

const gpu = (index: number) => ({ index, temperatureC: 41, powerW: 400, utilizationPct: 60, memoryUsedBytes: 1073741824, eccVolatileDbe: 0, processCount: 1 });
const heartbeat = {
  nodeId: "gpu-node-1",
  bootId: "boot-a",
  sentAt: "2026-11-22T23:50:00.000Z",
  nvml: { available: true, libraryPath: "/usr/lib/libnvidia-ml.so.1" },
  health: { checked: true, worst: "healthy", openIncidents: 0 },
  gpus: [gpu(0), gpu(1), gpu(2)],
};
const event = (seq: number) => ({
  seq,
  time: "2026-11-22T23:50:00Z",
  bootId: "boot-a",
  check: "xid",
  code: "79",
  severity: "unhealthy",
  action: "reboot",
  gpu: { index: 0, uuid: "GPU-1", pciBusId: "0000:01:00.0" },
  message: "GPU has fallen off the bus",
  count: 1,
});
const batch = { nodeId: "gpu-node-1", events: [event(1), event(2)] };
const register = {
  nodeId: "gpu-node-1",
  hostname: "gpu-node-1",
  bootId: "boot-a",
  agentVersion: "0.1.0",
  spoolId: "6f1c2a7e-0d5b-4c53-9a51-2f7f0f3c9b10",
  nvml: { available: false, error: "no libnvidia-ml", triedPaths: ["/usr/lib/libnvidia-ml.so.1"] },
  gpus: [{ index: 0, uuid: "GPU-1", pciBusId: "0000:01:00.0", name: "H100", memoryTotalBytes: 85899345920 }],
  openFindings: [event(1)],
};

/** Values of every kind, and the edges the wire's schemas draw. */
const ODD: unknown[] = [
  null,
  true,
  false,
  0,
  -0,
  -1,
  1.5,
  63,
  64,
  3600,
  3601,
  2 ** 53,
  Number.MAX_SAFE_INTEGER,
  1e308,
  Number.POSITIVE_INFINITY,
  Number.NaN,
  "",
  "x",
  "gpu-node-2",
  "-bad-",
  "a".repeat(64),
  "a".repeat(65),
  "a".repeat(257),
  "2026-02-31T00:00:00Z",
  "2026-11-22T24:00:00Z",
  "2026-11-22",
  "2026-11-22T23:50:00+01:00",
  "healthy",
  "unhealthy",
  "reboot",
  "6f1c2a7e-0d5b-4c53-9a51-2f7f0f3c9b10",
  "not-a-uuid",
  // Text the store cannot hold (lone surrogates), NUL, and the longest strings the wire allows.
  "\udfff",
  "ok \ud83d",
  "\ud800x",
  "a\u0000b",
  "🎉".repeat(128),
  "🎉".repeat(2048),
  "🎉".repeat(2049),
  [],
  [1, 2],
  {},
  { index: 0 },
];

/** A copy of `value` with one random change somewhere inside it: a value replaced, a key removed or added, an array item dropped or copied. */
function mutate(value: unknown, random: Random): unknown {
  const pick = <T>(items: readonly T[]): T => items[random.int(items.length)]!;
  if (Array.isArray(value)) {
    const copy = [...value];
    if (copy.length > 0 && random.next() < 0.7) {
      const i = random.int(copy.length);
      copy[i] = mutate(copy[i], random);
    } else if (random.next() < 0.5 && copy.length > 0) copy.splice(random.int(copy.length), 1);
    else copy.push(copy.length > 0 ? structuredClone(pick(copy)) : pick(ODD));
    return copy;
  }
  if (value !== null && typeof value === "object") {
    const copy: Record<string, unknown> = { ...(value as Record<string, unknown>) };
    const keys = Object.keys(copy);
    const roll = random.next();
    if (keys.length > 0 && roll < 0.7) {
      const key = pick(keys);
      copy[key] = random.next() < 0.5 ? mutate(copy[key], random) : pick(ODD);
    } else if (keys.length > 0 && roll < 0.85) delete copy[pick(keys)];
    else copy[pick(["extra", "__proto__", "toString", "constructor", "index", "seq"])] = pick(ODD);
    return copy;
  }
  return pick(ODD);
}

const CASES = 20_000;

describe("accepts", () => {
  for (const [name, schema, valid] of [
    ["Heartbeat", Heartbeat, heartbeat],
    ["EventBatch", EventBatch, batch],
    ["RegisterRequest", RegisterRequest, register],
  ] as const) {
    test(`${name}: compiles; says yes only where valibot does, with the same value (${CASES} mutated bodies)`, () => {
      const fast = accepts(schema);
      expect(fast).toBeDefined();
      expect(v.safeParse(schema, valid).success).toBe(true);
      expect(fast!(valid)).toBe(true);
      const random = new Random(18, name);
      let yes = 0;
      let agreedNo = 0;
      for (let i = 0; i < CASES; i++) {
        // One to three changes, then through JSON as the API receives it.
        let body: unknown = valid;
        for (let n = 1 + random.int(3); n > 0; n--) body = mutate(body, random);
        body = JSON.parse(JSON.stringify(body));
        const parsed = v.safeParse(schema, body, ONE_ISSUE_PER_VALUE);
        if (fast!(body)) {
          yes++;
          if (!parsed.success) throw new Error(`case ${i}: accepted what valibot refuses: ${JSON.stringify(body)}`);
          expect(parsed.output as unknown).toEqual(body);
        } else if (!parsed.success) agreedNo++;
      }
      // Not vacuous: many of the bodies are accepted, and many refused by both.
      expect(yes).toBeGreaterThan(CASES / 20);
      expect(agreedNo).toBeGreaterThan(CASES / 4);
    });
  }

  test("leaves to valibot what it cannot judge: an unknown key of a plain object, a default, a transformation", () => {
    const withExtra = { ...heartbeat, gpus: [{ ...gpu(0), extra: 1 }] };
    expect(v.safeParse(Heartbeat, withExtra).success).toBe(true); // valibot drops it
    expect(accepts(Heartbeat)!(withExtra)).toBe(false);
    expect(accepts(v.object({ a: v.optional(v.number(), 1) }))).toBeUndefined();
    expect(accepts(v.pipe(v.string(), v.trim()))).toBeUndefined();
    expect(accepts(v.union([v.string(), v.number()]))).toBeUndefined();
  });
});
