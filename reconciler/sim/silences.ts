// Silent agents: an agent a scripted `silence` (or `vanish`) stopped. Its last heartbeat is
// kept, since its node goes Lost once that is older than heartbeat_timeout (the pass
// schedule plans a pass then); a silence `for` a while ends on its own, and the agent
// heartbeats again at once.
import type { SimulatedAgents } from "./agents.ts";

export class Silences {
  /** When each silence with a `for` ends. */
  private readonly ends = new Map<string, number>();
  /** Silent agents (vanished ones too): when their last heartbeat was. */
  private readonly beats = new Map<string, number>();

  constructor(private readonly agents: SimulatedAgents) {}

  /** The node's agent falls silent after its heartbeat at `lastBeat`, until `until` (or for good). */
  silence(nodeId: string, lastBeat: number, until?: number): void {
    this.agents.setSilent(nodeId, true);
    this.beats.set(nodeId, lastBeat);
    if (until !== undefined) this.ends.set(nodeId, until);
  }

  /** When the next silence ends. */
  nextEndAt(): number | undefined {
    let next: number | undefined;
    for (const at of this.ends.values()) if (next === undefined || at < next) next = at;
    return next;
  }

  /** Ends the silences due by `t`: those agents heartbeat again. Whether any did. */
  async endDue(t: number): Promise<boolean> {
    let ended = false;
    for (const [id, at] of this.ends) {
      if (at > t) continue;
      this.ends.delete(id);
      this.beats.delete(id);
      this.agents.setSilent(id, false);
      await this.agents.heartbeatOne(id);
      ended = true;
    }
    return ended;
  }

  /** The last heartbeats of the silent agents. */
  lastBeats(): IterableIterator<number> {
    return this.beats.values();
  }
}
