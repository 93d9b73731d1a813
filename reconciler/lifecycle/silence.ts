// How long a node's agent has been silent, as the loop, the Lost step and the partition rail
// all count it: from its last heartbeat, but never from before this loop could hear it (a
// reconciler that was down, or whose database was restored, finds heartbeat times older than
// the timeout that say nothing about the agents).
export function heartbeatAge(lastHeartbeatAt: number, at: number, heardSince: number): number {
  return at - Math.max(lastHeartbeatAt, heardSince);
}
