// GET /v1/watch: a server-sent-event stream that says when anything the views show changed,
// from a cheap fingerprint of the store that one poll per interval computes for every listener.
import type { Context } from "hono";
import { streamSSE } from "hono/streaming";
import type { Store } from "../../store/store.ts";

/**
 * A cheap fingerprint of what the views show: newest audit row, event and incident,
 * the sum of node versions (every transition and patch bumps one), the verdict mix,
 * open breakers and paused pools. Heartbeats do not change it.
 */
async function fingerprint(store: Store): Promise<string> {
  const rs = await store.client.execute(`select
    (select coalesce(max(id), 0) from audit_log) as a,
    (select coalesce(max(id), 0) from health_events) as e,
    (select coalesce(max(id), 0) from incidents) as i,
    (select coalesce(sum(version), 0) || '.' || count(*) || '.' ||
       coalesce(sum(case verdict when 'healthy' then 1 when 'degraded' then 1000 when 'unhealthy' then 1000000 else 0 end), 0) from nodes) as n,
    (select count(*) || '.' || coalesce(max(tripped_at), 0) from breakers where reset_at is null) as b,
    (select coalesce(sum(paused), 0) || '.' || coalesce(max(updated_at), 0) from pools where paused = 1) as p`);
  const row = rs.rows[0];
  return row === undefined ? "" : [row.a, row.e, row.i, row.n, row.b, row.p].map(String).join("/");
}

/** One store poll per interval however many dashboards listen. */
export class ChangeWatcher {
  private last: { at: number; value: Promise<string> } | undefined;
  constructor(
    private readonly store: Store,
    readonly intervalMs: number,
  ) {}

  current(): Promise<string> {
    const t = performance.now();
    if (this.last === undefined || t - this.last.at >= this.intervalMs / 2) {
      this.last = { at: t, value: fingerprint(this.store).catch(() => "unavailable") };
    }
    return this.last.value;
  }
}

/**
 * Server-sent events: `change` (with the new fingerprint) whenever the views would differ; a
 * ping every 5 s otherwise, inside Bun.serve's 10 s idle timeout (which would end the stream).
 */
const WATCH_PING_MS = 5_000;

export function watchStream(c: Context, watcher: ChangeWatcher): Response {
  c.header("Cache-Control", "no-store");
  c.header("X-Accel-Buffering", "no");
  return streamSSE(c, async (stream) => {
    let open = true;
    stream.onAbort(() => {
      open = false;
    });
    let last = await watcher.current();
    await stream.writeSSE({ event: "hello", data: JSON.stringify({ version: last }) });
    let sincePing = 0;
    while (open) {
      await stream.sleep(watcher.intervalMs);
      if (!open) break;
      const now = await watcher.current();
      if (now !== last) {
        last = now;
        await stream.writeSSE({ event: "change", data: JSON.stringify({ version: now }) });
        sincePing = 0;
      } else if ((sincePing += watcher.intervalMs) >= WATCH_PING_MS) {
        await stream.writeSSE({ event: "ping", data: "{}" });
        sincePing = 0;
      }
    }
  });
}
