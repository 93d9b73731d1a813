// Processes on this machine, read from /proc: whether a pid is still the process that
// was started (pids are reused), for the local provider's agents and the leader lease.
import { readFileSync } from "node:fs";

export interface ProcStat {
  /** Field 3: R, S, D, Z, X, … */
  state: string;
  /** Field 22: start time in clock ticks after boot. */
  startTime: number;
}

export function procStat(pid: number): ProcStat | undefined {
  let text: string;
  try {
    text = readFileSync(`/proc/${pid}/stat`, "utf8");
  } catch {
    return undefined;
  }
  // Field 2 (comm) is parenthesised and may contain spaces or ')': split after the last ')'.
  const fields = text.slice(text.lastIndexOf(")") + 2).split(" ");
  const state = fields[0];
  const startTime = Number(fields[19]);
  if (state === undefined || !Number.isInteger(startTime)) return undefined;
  return { state, startTime };
}

/** True when pid is a live (not zombie) process that started at startTime. */
export function processAlive(pid: number, startTime: number | undefined): boolean {
  const st = procStat(pid);
  if (st === undefined || st.state === "Z" || st.state === "X" || st.state === "x") return false;
  return startTime === undefined || st.startTime === startTime;
}
