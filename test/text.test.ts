// schema/text.ts: what text may be stored, how it is cut, and how outside text is shown; and the
// edges that use it for files (the config and policy YAML).
import { describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import * as v from "valibot";
import { loadConfigFile, parseConfig } from "../reconciler/config/load.ts";
import { PoolSchema } from "../schema/config.ts";
import {
  WellFormedStrings,
  cutText,
  decodeUtf8,
  isWellFormedText,
  loneSurrogateAt,
  printable,
  repairText,
  textPrefix,
  textSuffix,
  wellFormedJson,
} from "../schema/text.ts";
import { issuePaths } from "../schema/wire.ts";
import { tempDir } from "./support.ts";

const PARTY = "🎉"; // two UTF-16 units

describe("cuts keep surrogate pairs whole", () => {
  test("textPrefix and cutText never end in half a pair, at any length", () => {
    for (const text of [PARTY.repeat(50), `x${PARTY.repeat(50)}`, `ab${"é".repeat(10)}${PARTY}${PARTY}c`]) {
      for (let n = 0; n <= text.length + 1; n++) {
        const prefix = textPrefix(text, n);
        expect({ n, ok: isWellFormedText(prefix), within: prefix.length <= n }).toEqual({ n, ok: true, within: true });
        expect(text.startsWith(prefix)).toBe(true);
        const cut = cutText(text, Math.max(1, n));
        expect({ n, ok: isWellFormedText(cut), within: cut.length <= Math.max(1, n) }).toEqual({ n, ok: true, within: true });
      }
    }
    for (const text of [PARTY.repeat(50), `${PARTY.repeat(50)}x`]) {
      for (let n = 0; n <= text.length + 1; n++) {
        const suffix = textSuffix(text, n);
        expect({ n, ok: isWellFormedText(suffix), within: suffix.length <= n, end: text.endsWith(suffix) }).toEqual({ n, ok: true, within: true, end: true });
      }
    }
    expect(cutText("short", 10)).toBe("short");
    expect(cutText(`${PARTY}${PARTY}`, 3)).toBe(`${PARTY}…`);
    expect(cutText(`a${PARTY}b`, 3)).toBe("a…");
  });
});

describe("well-formed text", () => {
  test("lone surrogates are found where they are, and repaired to U+FFFD", () => {
    expect(loneSurrogateAt(`ok${PARTY}`)).toBe(-1);
    expect(loneSurrogateAt("ab\udfff")).toBe(2);
    expect(loneSurrogateAt(`${PARTY}\ud800x`)).toBe(2);
    expect(repairText("a\ud800b\udc00")).toBe("a\ufffdb\ufffd");
    expect(repairText(`fine ${PARTY}`)).toBe(`fine ${PARTY}`);
  });

  test("WellFormedStrings reports each bad string and key at its path", () => {
    const r = v.safeParse(WellFormedStrings, { nodeId: "n", events: [{ message: "ok" }, { message: "x\udfff", code: "\ud800" }], labels: { "k\udc00": "v" } });
    expect(r.success).toBe(false);
    const issues = issuePaths(r.issues ?? []);
    expect(issues.map((i) => i.path)).toEqual(["events[1].message", "events[1].code", "labels.k\ufffd"]);
    expect(issues[0]!.message).toBe("must be well-formed Unicode text: a lone UTF-16 surrogate (\\uDFFF) at character 1 cannot be encoded as UTF-8");
    expect(issues[2]!.message).toStartWith("this key must be well-formed");
    expect(v.safeParse(WellFormedStrings, { a: [PARTY, 1, null, { b: "é" }] }).success).toBe(true);
  });

  test("a thousand bad strings are refused in 20 issues", () => {
    const r = v.safeParse(
      WellFormedStrings,
      Array.from({ length: 1000 }, () => "\udfff"),
    );
    expect(r.issues?.length).toBe(20);
  });

  test("wellFormedJson writes what SQLite's JSON functions decode into UTF-8", () => {
    const value = [["id", "bad\udfff", `ok ${PARTY}`, "literal \\ud800 text"]];
    const json = wellFormedJson(value);
    expect(JSON.parse(json)).toEqual([["id", "bad\ufffd", `ok ${PARTY}`, "literal \\ud800 text"]]);
    expect(wellFormedJson({ a: "plain" })).toBe('{"a":"plain"}');
  });
});

describe("strict UTF-8", () => {
  test("overlong forms, encoded surrogates, stray and truncated bytes are refused with their byte", () => {
    const at = (bytes: number[]) => {
      const r = decodeUtf8(new Uint8Array(bytes));
      return r.ok ? "ok" : r.byte;
    };
    expect(at([0x61, 0xc0, 0xaf])).toBe(1); // overlong '/'
    expect(at([0x61, 0x62, 0xe0, 0x80, 0xaf])).toBe(2); // overlong, three bytes
    expect(at([0xed, 0xa0, 0x80])).toBe(0); // U+D800 encoded
    expect(at([0x61, 0xff])).toBe(1);
    expect(at([0x61, 0x80])).toBe(1); // a continuation byte alone
    expect(at([0x61, 0xe2, 0x82])).toBe(1); // cut short
    expect(at([0xf4, 0x90, 0x80, 0x80])).toBe(0); // past U+10FFFF
    expect(at([...new TextEncoder().encode(`é${PARTY}`), 0x00])).toBe("ok"); // NUL is valid UTF-8
    const r = decodeUtf8(new Uint8Array([0x61, 0xc0, 0xaf]));
    expect(r.ok ? "" : r.message).toBe("is not valid UTF-8: an invalid or overlong byte sequence at byte 1 (C0 AF)");
  });
});

describe("printable", () => {
  test("controls, ANSI, C1, line separators and bidi become visible; one line stays one line", () => {
    const hostile = "a\nFORGED: x\r\x1b[31mred\u009b2J\u2028\u202eevil\u2066\t";
    expect(printable(hostile, true)).toBe("a\\nFORGED: x\\r\\x1b[31mred\\x9b2J\\u2028\\u202eevil\\u2066\\t");
    // Multi-line human text keeps its newlines and tabs.
    expect(printable("a\n\tb\x1b", false)).toBe("a\n\tb\\x1b");
  });
});

describe("files", () => {
  const pool = (labels: string) =>
    `pools:\n  - name: a\n    provider: lambda\n    instance_type: x\n    region: r\n    labels:\n${labels}    scaling:\n      min_nodes: 0\n      max_nodes: 2\n`;

  test("a lone surrogate written as a YAML escape is refused with its key path and line", () => {
    const r = parseConfig(pool('      team: "ml\\udfff"\n'), "navarch.yaml");
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems.map((p) => [p.path, p.line])).toEqual([["pools[0].labels.team", 7]]);
    expect(r.problems[0]!.message).toContain("lone UTF-16 surrogate");
  });

  test("a GpuPool resource's spec (no file, the pool's own schema): the same check", () => {
    const r = v.safeParse(PoolSchema, {
      name: "a",
      provider: "lambda",
      instance_type: "x",
      region: "r",
      labels: { team: "ml\udfff" },
      scaling: { min_nodes: 0, max_nodes: 2 },
    });
    expect(r.success).toBe(false);
    expect(issuePaths(r.issues ?? []).map((i) => i.path)).toEqual(["labels.team"]);
  });

  test("a config file with bytes that are not UTF-8 is refused with the line and column, not read with U+FFFD", async () => {
    const path = join(tempDir(), "navarch.yaml");
    const text = new TextEncoder().encode(pool("      team: ml\n"));
    const at = pool("      team: ml\n").indexOf("team: ml"); // ASCII: the same index in bytes
    const bytes = new Uint8Array([...text.subarray(0, at), 0xc0, 0xaf, ...text.subarray(at)]);
    writeFileSync(path, bytes);
    const r = await loadConfigFile(path);
    expect(r.ok).toBe(false);
    if (r.ok) return;
    expect(r.problems[0]!.message).toMatch(/is not valid UTF-8: an invalid or overlong byte sequence at line 7, column \d+ \(byte \d+\) \(C0 AF/);
  });
});
