// One child of the randomized test: runs seeds FROM..TO (inclusive) and prints, as its
// last line, a JSON object with every violation and what the runs exercised.
import { removeTempDirs } from "../support.ts";
import { noneExercised, run } from "./run.ts";

const [from, to] = process.argv.slice(2).map(Number);
if (!Number.isInteger(from) || !Number.isInteger(to)) throw new Error("usage: child.ts FROM TO");
const violations: string[] = [];
const exercised = noneExercised();
for (let seed = from!; seed <= to!; seed++) {
  const r = await run(seed);
  violations.push(...r.violations);
  for (const k of Object.keys(exercised) as (keyof typeof exercised)[]) exercised[k] += r.exercised[k];
  removeTempDirs();
}
console.log(JSON.stringify({ violations, exercised }));
