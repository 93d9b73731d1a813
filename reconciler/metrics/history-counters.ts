// Counters over the append-only tables (health_events, audit_log): Xid errors by code, rail
// refusals by rail, breaker trips by scope, registration timeouts and quarantined values. Each
// keeps an id cursor and adds only the rows since the last scrape, so a counter equals the
// table's total: monotonic across restarts, and cheap however long the tables grow.
import { RAILS, xidLabel } from "./labels.ts";
import { num, str, type RowQuery } from "./store-rows.ts";

export class HistoryCounters {
  readonly xidCounts = new Map<string, number>();
  readonly railCounts = new Map<string, number>();
  readonly breakerTrips = new Map<string, number>();
  readonly registrationTimeouts = { n: 0 };
  readonly quarantinedValues = { n: 0 };
  private readonly cursors = { events: 0, audit: 0 };

  constructor(private readonly query: RowQuery) {}

  /** Adds the rows written since the last call. */
  async advance(): Promise<void> {
    const { query, cursors, xidCounts, railCounts, breakerTrips, quarantinedValues, registrationTimeouts } = this;
    const [top] = await query("select coalesce((select max(id) from health_events), 0) as e, coalesce((select max(id) from audit_log), 0) as a");
    const eventsTop = num(top?.e);
    const auditTop = num(top?.a);
    if (eventsTop > cursors.events) {
      const rows = await query("select code, count(*) as n from health_events where id > ? and id <= ? and \"check\" = 'xid' group by code", [
        cursors.events,
        eventsTop,
      ]);
      for (const r of rows) {
        const label = xidLabel(str(r.code));
        xidCounts.set(label, (xidCounts.get(label) ?? 0) + num(r.n));
      }
      cursors.events = eventsTop;
    }
    if (auditTop > cursors.audit) {
      const rows = await query(
        `select action,
                case action when 'blocked' then json_extract(details, '$.rail') when 'breaker_tripped' then target else '' end as label,
                count(*) as n
         from audit_log
         where id > ? and id <= ?
           and (action in ('blocked', 'breaker_tripped', 'text_quarantined')
                or (action = 'transition' and json_extract(details, '$.to') = 'failed'
                    and json_extract(details, '$.reason') like 'agent did not register%'))
         group by 1, 2`,
        [cursors.audit, auditTop],
      );
      for (const r of rows) {
        const action = str(r.action);
        const label = str(r.label);
        if (action === "blocked") {
          const rail = RAILS.includes(label) ? label : "other";
          railCounts.set(rail, (railCounts.get(rail) ?? 0) + num(r.n));
        } else if (action === "breaker_tripped") breakerTrips.set(label, (breakerTrips.get(label) ?? 0) + num(r.n));
        else if (action === "text_quarantined") quarantinedValues.n += num(r.n);
        else registrationTimeouts.n += num(r.n);
      }
      cursors.audit = auditTop;
    }
  }
}
