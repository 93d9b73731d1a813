// What happened during a run, as the report tells it, gathered as it happens: the notable
// events for the report's timeline (each part of the simulator adds its own; the report
// adds the database's incidents, breakers and scaling at the end), the warnings about
// scripted events that found nothing to act on, the asserts' results, and the nodes a
// safety rail held back.
import type { AssertResult, TimelineEvent } from "./report.ts";

export class RunLog {
  readonly events: TimelineEvent[] = [];
  readonly warnings: string[] = [];
  readonly asserts: AssertResult[] = [];
  /** The rail that blocked each node (`node|rail`), the first time it did. */
  readonly blocks = new Map<string, string>();

  event(e: TimelineEvent): void {
    this.events.push(e);
  }

  warn(text: string): void {
    this.warnings.push(text);
  }

  blocked(node: string, rail: string): void {
    const key = `${node}|${rail}`;
    if (!this.blocks.has(key)) this.blocks.set(key, rail);
  }
}
