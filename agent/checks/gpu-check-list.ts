// Every GPU check the agent runs, in the order their findings are reported. Adding a check: write
// its module (a GpuCheck over one GPU's readings), add its name to schema/checks.ts, and add it
// here. The runner (run.ts) evaluates each at its tier's cadence.
import { clocks } from "./clocks.ts";
import { ecc } from "./ecc.ts";
import { fabric } from "./fabric.ts";
import type { GpuCheck } from "./gpu-check.ts";
import { nvlink } from "./nvlink.ts";
import { pcie } from "./pcie.ts";
import { persistenceMode } from "./persistence-mode.ts";
import { recoveryAction } from "./recovery-action.ts";
import { retiredPages } from "./retired-pages.ts";
import { rowRemap } from "./row-remap.ts";
import { thermal } from "./thermal.ts";

export const GPU_CHECKS: readonly GpuCheck[] = [recoveryAction, ecc, rowRemap, retiredPages, thermal, clocks, nvlink, pcie, fabric, persistenceMode];
