// Which zones a GCP launch tries when its pool names none: the region's zones from the API
// (zones.list, those UP and not retired), narrowed to the zones that offer the machine type
// (aggregated machineTypes), in order. What is found is reused for a while (zoneCacheMs): a
// launch after a stockout must not list the zones again.
import type * as v from "valibot";
import type { JsonHttp } from "../http.ts";
import { AggregatedMachineTypes, ZoneList, lastSegment } from "./compute-api.ts";

/** The zones of each region and machine type, discovered through the API and cached. */
export class GcpZones {
  private readonly cache = new Map<string, { zones: string[]; expiresAt: number }>();

  constructor(
    private readonly http: JsonHttp,
    /** The project whose zones these are (read when the cache has no answer). */
    private readonly project: () => string,
    private readonly now: () => number,
    /** How long a region's discovered zones are reused. */
    private readonly cacheMs: number,
  ) {}

  /**
   * The zones of `region` to launch `machineType` in, in order: zones.list's zones of the
   * region that are UP, narrowed to those offering the machine type. Cached for cacheMs.
   */
  async zonesFor(region: string, machineType: string): Promise<string[]> {
    const key = `${region}\n${machineType}`;
    const cached = this.cache.get(key);
    if (cached !== undefined && cached.expiresAt > this.now()) return cached.zones;
    const project = this.project();
    const inRegion: { name: string; up: boolean }[] = [];
    let pageToken: string | undefined;
    do {
      const page: v.InferOutput<typeof ZoneList> | undefined = await this.http.request("GET", `/projects/${project}/zones`, {
        query: { maxResults: "500", pageToken },
        schema: ZoneList,
      });
      for (const zone of page!.items) {
        if (zone.region === undefined || lastSegment(zone.region) !== region) continue;
        const retired = zone.deprecated?.state === "DELETED" || zone.deprecated?.state === "OBSOLETE";
        if (!retired) inRegion.push({ name: zone.name, up: (zone.status ?? "UP") === "UP" });
      }
      pageToken = page!.nextPageToken;
    } while (pageToken !== undefined && pageToken !== "");
    if (inRegion.length === 0) {
      throw this.http.error(
        "invalid",
        `region ${region} has no zones in project ${project} (set the pool's region to a GCE region like us-central1, or set zones)`,
      );
    }
    const up = inRegion.filter((z) => z.up).map((z) => z.name);
    if (up.length === 0) throw this.http.error("transient", `every zone of ${region} is DOWN (${inRegion.map((z) => z.name).join(", ")})`);
    const offering = new Set<string>();
    pageToken = undefined;
    do {
      const path = `/projects/${project}/aggregated/machineTypes`;
      const page: v.InferOutput<typeof AggregatedMachineTypes> | undefined = await this.http.request("GET", path, {
        query: { filter: `name = "${machineType}"`, maxResults: "500", pageToken },
        schema: AggregatedMachineTypes,
      });
      for (const scoped of Object.values(page!.items)) {
        for (const mt of scoped.machineTypes) if (mt.name === machineType && mt.zone !== undefined) offering.add(lastSegment(mt.zone));
      }
      pageToken = page!.nextPageToken;
    } while (pageToken !== undefined && pageToken !== "");
    const zones = up.filter((z) => offering.has(z)).sort();
    if (zones.length === 0) {
      throw this.http.error("invalid", `machine type ${machineType} is not offered in any zone of ${region} that is UP (${up.sort().join(", ")})`);
    }
    this.cache.set(key, { zones, expiresAt: this.now() + this.cacheMs });
    return zones;
  }
}
