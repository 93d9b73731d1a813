// How Navarch's cordon reads on a Slurm node: the drain reason and the comment marker.
import { expect, test } from "bun:test";
import { drainedByUs, drainReason, isDrained, readMarker, withMarker, withoutMarker } from "../reconciler/schedulers/slurm/marker.ts";

test("the reason says what Navarch saw, on one line, and marks the DRAIN as ours", () => {
  const reason = drainReason("fatal: Xid 79 on GPU 3 (00000000:5D:00.0):\nGPU has fallen off the bus", 12);
  expect(reason).toBe("navarch: fatal: Xid 79 on GPU 3 (00000000:5D:00.0): GPU has fallen off the bus (incident 12)");
  expect(drainReason("scale down", 0)).toBe("navarch: scale down");
  expect(drainedByUs({ flags: ["DRAIN"], reason })).toBe(true);
  expect(drainedByUs({ flags: [], reason })).toBe(false); // resumed: the reason no longer counts
  expect(drainedByUs({ flags: ["DRAIN"], reason: "maintenance: bios" })).toBe(false);
  expect(isDrained({ flags: ["NOT_RESPONDING", "DRAIN"] })).toBe(true);
});

test("the marker sits beside whatever comment was there, replaces an older one, and comes off cleanly", () => {
  const marked = withMarker("rack 12, PSU replaced", { nodeId: "train-1a2b3c4d", incidentId: 7, at: 1_700_000_000_000 });
  expect(marked).toBe("rack 12, PSU replaced [navarch-cordon node=train-1a2b3c4d incident=7 at=1700000000000]");
  expect(readMarker(marked)).toEqual({ nodeId: "train-1a2b3c4d", incidentId: 7, at: 1_700_000_000_000 });
  const again = withMarker(marked, { nodeId: "train-9f8e7d6c", incidentId: 8, at: 1_700_000_100_000 });
  expect(readMarker(again)?.nodeId).toBe("train-9f8e7d6c");
  expect(again.match(/navarch-cordon/g)).toHaveLength(1);
  expect(withoutMarker(again)).toBe("rack 12, PSU replaced");
  expect(withMarker("", { nodeId: "n", incidentId: 0, at: 1 })).toBe("[navarch-cordon node=n incident=0 at=1]");
  expect(withoutMarker("[navarch-cordon node=n incident=0 at=1]")).toBe("");
  expect(readMarker("a human's note")).toBeUndefined();
});
