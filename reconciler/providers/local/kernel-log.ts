// A local machine's kernel log: a file in /dev/kmsg record format that its agent follows
// (--kmsg-path) in place of the host's /dev/kmsg. Appending a record is how a kernel-log fault
// (an Xid line, say) reaches a local machine.
import { appendFileSync, readFileSync } from "node:fs";
import { errnoOf } from "./errors.ts";

/**
 * Appends a record (`<level>,<seq>,<usec>,-;<message>`, /dev/kmsg format) to the kernel log
 * at `path`, numbered after the records already there.
 */
export function appendKernelLogRecord(path: string, message: string, level: number): void {
  let seq = 0;
  try {
    const text = readFileSync(path, "utf8");
    for (let i = text.indexOf("\n"); i >= 0; i = text.indexOf("\n", i + 1)) seq++;
  } catch (err) {
    if (errnoOf(err) !== "ENOENT") throw err;
  }
  appendFileSync(path, `${level & 7},${seq},${uptimeUsec()},-;${kmsgEscape(message)}\n`);
}

/** /dev/kmsg escaping: '\' and non-printable bytes as \xHH. */
function kmsgEscape(message: string): string {
  return message.replace(/[\x00-\x1f\x7f\\]/g, (c) => `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`);
}

function uptimeUsec(): number {
  try {
    const secs = Number(readFileSync("/proc/uptime", "utf8").split(" ")[0]);
    if (Number.isFinite(secs)) return Math.round(secs * 1_000_000);
  } catch {
    // fall through
  }
  return Math.round(performance.now() * 1000);
}
