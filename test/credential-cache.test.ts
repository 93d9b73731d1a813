// The node credential cache: what it remembers, for how long, and what it forgets at once.
import { describe, expect, test } from "bun:test";
import { NodeCredentialCache } from "../reconciler/auth/credentials.ts";

describe("NodeCredentialCache", () => {
  test("an entry lives its TTL, then the store must be asked again", () => {
    const cache = new NodeCredentialCache(5000);
    cache.set("h1", "n1", 1000, cache.mark());
    expect(cache.get("h1", 5999)).toBe("n1");
    expect(cache.get("h1", 6000)).toBeUndefined();
    expect(cache.get("h1", 1000)).toBeUndefined();
  });

  test("a node's new credential replaces its old one; forgetNode drops it at once", () => {
    const cache = new NodeCredentialCache();
    cache.set("old", "n1", 0, cache.mark());
    cache.set("new", "n1", 0, cache.mark());
    expect(cache.get("old", 1)).toBeUndefined();
    expect(cache.get("new", 1)).toBe("n1");
    cache.forgetNode("n1");
    expect(cache.get("new", 1)).toBeUndefined();
  });

  test("a lookup that began before a credential was replaced is not remembered", () => {
    const cache = new NodeCredentialCache();
    const mark = cache.mark(); // the lookup of the old credential starts…
    cache.forgetNode("n1"); // …a registration replaces it meanwhile…
    cache.set("old", "n1", 0, mark); // …and what the lookup read is not kept
    expect(cache.get("old", 1)).toBeUndefined();
  });

  test("bounded: when full, the oldest entry goes first", () => {
    const cache = new NodeCredentialCache(60_000, 3);
    for (const i of [1, 2, 3, 4]) cache.set(`h${i}`, `n${i}`, 0, cache.mark());
    expect(cache.get("h1", 1)).toBeUndefined();
    expect([2, 3, 4].map((i) => cache.get(`h${i}`, 1))).toEqual(["n2", "n3", "n4"]);
  });
});
