// PCI bus ids: the key that joins a kernel-log line to the GPU NVML reports.

/** `dddd:bb:dd.f`, with the domain up to 8 hex digits (NVML) or none (domain 0). */
const BDF_FULL = /^(?:([0-9a-f]{1,8}):)?([0-9a-f]{1,2}):([0-9a-f]{1,2})(?:\.([0-7]))?$/i;

/**
 * The one normaliser of PCI bus ids, to NVML's `nvmlPciInfo_t.busId` form `00000000:3B:00.0`
 * (8-hex-digit domain, upper case, function). Accepts kmsg's `PCI:0000:3b:00`, `0000:3b:00.0`,
 * NVML's legacy `0000:3B:00.0`, and domain-less `3b:00.0` (domain 0). Returns undefined for anything
 * that is not a bus id.
 */
export function normalizePciBusId(raw: string): string | undefined {
  let s = raw.trim();
  if (/^pci:/i.test(s)) s = s.slice(4);
  const m = BDF_FULL.exec(s);
  if (!m) return undefined;
  const [, domain = "0", bus = "", device = "", fn = "0"] = m;
  return `${domain.padStart(8, "0")}:${bus.padStart(2, "0")}:${device.padStart(2, "0")}.${fn}`.toUpperCase();
}
