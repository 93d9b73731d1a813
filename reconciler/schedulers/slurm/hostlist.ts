// Slurm's hostlist expressions (`gpu[01-04,07],login1`, `rack[1-2]-n[1-3]`): how jobs name the
// nodes they run on. Bounds keep their zero padding (`[08-10]` is 08, 09, 10).

/** More names than any real job spans: an expression past it is refused, not expanded. */
const MAX_NAMES = 100_000;

export class HostlistError extends Error {
  override readonly name = "HostlistError";
}

/** Every node name the expression stands for, in order; an empty expression is none. */
export function expandHostlist(expression: string): string[] {
  const out: string[] = [];
  for (const item of splitTopLevel(expression.trim())) {
    if (item === "") continue;
    expandItem(item, "", out);
  }
  return out;
}

/** Splits on commas outside brackets. */
function splitTopLevel(text: string): string[] {
  const parts: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === "[") depth++;
    else if (c === "]") {
      if (depth === 0) throw new HostlistError(`unbalanced "]" in hostlist ${JSON.stringify(text)}`);
      depth--;
    } else if (c === "," && depth === 0) {
      parts.push(text.slice(start, i));
      start = i + 1;
    }
  }
  if (depth !== 0) throw new HostlistError(`unbalanced "[" in hostlist ${JSON.stringify(text)}`);
  parts.push(text.slice(start));
  return parts;
}

function expandItem(rest: string, prefix: string, out: string[]): void {
  const open = rest.indexOf("[");
  if (open < 0) {
    if (out.length >= MAX_NAMES) throw new HostlistError(`hostlist names more than ${MAX_NAMES} nodes`);
    out.push(prefix + rest);
    return;
  }
  const close = rest.indexOf("]", open);
  if (close < 0) throw new HostlistError(`unbalanced "[" in hostlist item ${JSON.stringify(rest)}`);
  const head = prefix + rest.slice(0, open);
  const tail = rest.slice(close + 1);
  for (const value of rangeValues(rest.slice(open + 1, close))) expandItem(tail, head + value, out);
}

function* rangeValues(ranges: string): Generator<string> {
  for (const range of ranges.split(",")) {
    const match = /^(\d+)(?:-(\d+))?$/.exec(range.trim());
    if (match === null) throw new HostlistError(`bad range ${JSON.stringify(range)} in hostlist`);
    const [low, high] = [match[1]!, match[2] ?? match[1]!];
    const [from, to] = [Number(low), Number(high)];
    if (to < from) throw new HostlistError(`range ${range} runs backwards`);
    if (to - from >= MAX_NAMES) throw new HostlistError(`hostlist names more than ${MAX_NAMES} nodes`);
    for (let n = from; n <= to; n++) yield String(n).padStart(low.length, "0");
  }
}
