// The fake libnvidia-ml (test/fake-nvml/fake_nvml.c) as the local provider drives it: the
// GPUs a local machine starts with (its state file) and the one-line commands that break them
// (written to its control FIFO): how a fault reaches a local machine's GPUs.
import { closeSync, constants as fsConstants, fstatSync, openSync, writeSync } from "node:fs";
import { ProviderError } from "../provider.ts";
import { errnoOf } from "./errors.ts";

/**
 * The commands the fake libnvidia-ml reads from its control FIFO (test/fake-nvml/fake_nvml.c,
 * run_command; a test checks the two lists agree). A line it does not know is dropped there
 * without a word, so fault injection refuses it here.
 */
export const FAKE_NVML_COMMANDS = [
  "reset",
  "count",
  "driver",
  "nvmlversion",
  "cuda",
  "init",
  "fabricversion",
  "name",
  "uuid",
  "serial",
  "pci",
  "memory",
  "temp",
  "margin",
  "threshold",
  "power",
  "util",
  "eccmode",
  "persistence",
  "procs",
  "ecc",
  "remap",
  "retired",
  "clocks",
  "events",
  "nvlinks",
  "nvlink",
  "nvlinkerr",
  "pcie",
  "replay",
  "fabric",
  "recovery",
  "field",
  "fieldret",
  "lost",
  "resetrequired",
  "ret",
  "hang",
  "xid",
  "event",
  "eventret",
] as const;

/** One control line: a command the fake library knows, then its arguments. */
export const FAKE_NVML_LINE = new RegExp(`^(${FAKE_NVML_COMMANDS.join("|")})( [^\\n\\r]*)?$`);

/** The fake library's default GPU model (fake_nvml.c). */
export const FAKE_GPU_MODEL = "NVIDIA H100 80GB HBM3";
const FAKE_DRIVER = "570.86.15";

/** The state file a new machine's fake library starts from: `gpus` GPUs of the default model. */
export function fakeNvmlState(name: string, instanceType: string, gpus: number): string {
  return `# fake libnvidia-ml state for ${name} (${instanceType})\ncount ${gpus}\ndriver ${FAKE_DRIVER}\n`;
}

/**
 * Writes one command line to the control FIFO of instance `id` without blocking. The library's
 * thread opens the FIFO (and keeps it open) only once the agent has loaded NVML: with no reader
 * yet, it tries again for `waitMs`, then fails with kind "not_found".
 */
export async function writeFakeNvmlControl(id: string, fifo: string, command: string, waitMs: number): Promise<void> {
  const line = Buffer.from(`${command}\n`);
  const deadline = Date.now() + waitMs;
  for (;;) {
    let fd: number;
    try {
      fd = openSync(fifo, fsConstants.O_WRONLY | fsConstants.O_NONBLOCK);
    } catch (err) {
      // ENXIO: no reader yet.
      const code = errnoOf(err);
      if ((code === "ENXIO" || code === "ENOENT") && Date.now() < deadline) {
        await Bun.sleep(20);
        continue;
      }
      if (code === "ENXIO" || code === "ENOENT") {
        throw new ProviderError("local", "not_found", `instance ${id} is not running (nothing reads its NVML control FIFO)`);
      }
      throw err;
    }
    try {
      if (!fstatSync(fd).isFIFO()) throw new ProviderError("local", "invalid", `${fifo} is not a FIFO`);
      // Below PIPE_BUF: one atomic write, never partial.
      writeSync(fd, line);
      return;
    } catch (err) {
      if (errnoOf(err) === "EAGAIN") throw new ProviderError("local", "transient", `instance ${id}: NVML control FIFO is full`);
      throw err;
    } finally {
      closeSync(fd);
    }
  }
}
