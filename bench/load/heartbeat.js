// k6 script for the ingest benchmark (bench/ingest.ts runs it against the compiled
// reconciler): each iteration POSTs one node's heartbeat (8 GPUs) with that node's own
// credential, nodes in turn, at a constant arrival rate (an open model: k6 starts
// iterations on schedule whether or not earlier ones have answered, so a slow server shows
// as latency and dropped iterations, not as a lower request rate that hides it).
//   k6 run -e URL=… -e FLEET=fleet.json -e RATE=10000 -e DURATION=30s -e SUMMARY=out.json heartbeat.js
import http from "k6/http";
import exec from "k6/execution";
import { SharedArray } from "k6/data";

// [[nodeId, token], …]: written by bench/ingest.ts.
const fleet = new SharedArray("fleet", () => JSON.parse(open(__ENV.FLEET)));
const URL = `${__ENV.URL}/v1/heartbeat`;
/** Requests per iteration (http.batch, in parallel): a k6 iteration costs more CPU than a request. */
const BATCH = Number(__ENV.BATCH ?? 10);
const gpus = JSON.stringify(
  Array.from({ length: 8 }, (_, g) => ({ index: g, temperatureC: 41, powerW: 400, utilizationPct: 60, memoryUsedBytes: 1073741824, processCount: 1 })),
);

export const options = {
  // Only the status is looked at; fewer tags per sample cost k6 less CPU (it shares the machine).
  discardResponseBodies: true,
  systemTags: ["status"],
  batch: BATCH,
  batchPerHost: BATCH,
  summaryTrendStats: ["min", "med", "p(90)", "p(99)", "max", "avg"],
  scenarios: {
    heartbeats: {
      executor: "constant-arrival-rate",
      rate: Math.round(Number(__ENV.RATE ?? 10000) / BATCH),
      timeUnit: "1s",
      duration: __ENV.DURATION ?? "30s",
      preAllocatedVUs: Number(__ENV.VUS ?? 200),
      maxVUs: Number(__ENV.MAX_VUS ?? 1000),
    },
  },
};

export default function () {
  const first = exec.scenario.iterationInTest * BATCH;
  const sentAt = new Date().toISOString();
  const requests = [];
  for (let i = 0; i < BATCH; i++) {
    const [nodeId, token] = fleet[(first + i) % fleet.length];
    const body = `{"nodeId":"${nodeId}","bootId":"boot","sentAt":"${sentAt}","nvml":{"available":true},"health":{"checked":true,"worst":"healthy","openIncidents":0},"gpus":${gpus}}`;
    requests.push(["POST", URL, body, { headers: { "Content-Type": "application/json", Authorization: `Bearer ${token}` } }]);
  }
  for (const res of http.batch(requests)) if (res.status !== 200) exec.test.abort(`heartbeat answered ${res.status} (${res.error})`);
}

export function handleSummary(data) {
  return { [__ENV.SUMMARY]: JSON.stringify(data) };
}
