// What making text safe costs, on a real libSQL file and the API's body reader:
//   - the start-up scan for stored text that is not UTF-8 (reconciler/store/quarantine.ts) over
//     10,000 nodes × 8 GPUs and EVENTS health events (default 1,000,000), a tenth of their
//     messages non-ASCII (those are read as bytes and checked), against opening the store without it;
//   - reading a heartbeat body: Bun's own JSON reader against api/body.ts (strict UTF-8, the
//     escape scan, the walk when it finds one).
//   bun run bench/text.ts [EVENTS]
import { Hono } from "hono";
import { readJsonBody } from "../reconciler/api/body.ts";
import { quarantineUnreadableText } from "../reconciler/store/quarantine.ts";
import { openStore } from "../reconciler/store/store.ts";
import { tempDir } from "../test/support.ts";
import { seed } from "./reconciler.ts";

const EVENTS = Number(process.argv[2] ?? 1_000_000);
const log = (s: string) => process.stdout.write(`${s}\n`);
const ms = (t0: number) => (performance.now() - t0).toFixed(0);

const url = `file:${tempDir("navarch-bench-text-")}/navarch.db`;
const store = await openStore({ url, healthProbeIntervalMs: 0 });
await seed(store, 10_000, Date.now());
for (let done = 0; done < EVENTS; done += 100_000) {
  await store.client.execute({
    sql: `INSERT INTO health_events (node_id, seq, boot_id, "time", received_at, "check", code, severity, action, message, count)
          SELECT printf('bench-%06d', value % 10000), value, 'boot', 0, 0, 'xid', '79', 'unhealthy', 'replace',
                 CASE WHEN value % 10 = 0 THEN 'GPU has fallen off the bus 🎉 ' || value ELSE 'GPU has fallen off the bus ' || value END, 1
          FROM generate_series(?, ?)`,
    args: [done + 1, Math.min(EVENTS, done + 100_000)],
  });
}
store.close();

for (let run = 0; run < 3; run++) {
  let t0 = performance.now();
  const opened = await openStore({ url, healthProbeIntervalMs: 0 });
  const open = ms(t0);
  t0 = performance.now();
  const found = await quarantineUnreadableText(opened.client, Date.now());
  log(
    `store open (the scan included): ${open} ms; the scan again on its own: ${ms(t0)} ms (${found.length} quarantined; 10,000 nodes, 80,000 GPUs, ${EVENTS} events)`,
  );
  opened.close();
}

const body = JSON.stringify({
  nodeId: "gpu-node-1",
  bootId: "boot-a",
  sentAt: new Date().toISOString(),
  nvml: { available: true, libraryPath: "/usr/lib/x86_64-linux-gnu/libnvidia-ml.so.1" },
  health: { checked: true, worst: "healthy", openIncidents: 0 },
  gpus: Array.from({ length: 8 }, (_, index) => ({ index, temperatureC: 41, powerW: 400, utilizationPct: 60, memoryUsedBytes: 1073741824, eccVolatileDbe: 0 })),
});
const app = new Hono();
app.post("/bun", async (c) => c.json({ ok: (await c.req.json()) !== undefined }));
app.post("/ours", async (c) => c.json({ ok: (await readJsonBody(c)).ok }));
for (const path of ["/bun", "/ours", "/bun", "/ours"]) {
  const n = 50_000;
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await app.request(path, { method: "POST", body, headers: { "Content-Type": "application/json" } });
  log(
    `heartbeat body (${body.length} bytes) through ${path === "/bun" ? "c.req.json()  " : "api/body.ts    "}: ${(((performance.now() - t0) * 1000) / n).toFixed(2)} µs a request (with Hono's routing)`,
  );
}
