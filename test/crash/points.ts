// Where the crash tests kill the reconciler: around each side effect of a replacement, and
// around each rung of a reboot (the ladder's cordon and drain are the replacement's).
export const CRASH_POINTS = [
  "before-launch",
  "after-launch",
  "after-cordon",
  "during-drain",
  "before-terminate",
  "after-terminate",
  "after-confirm-gone",
] as const;
export const REBOOT_CRASH_POINTS = ["after-cordon", "during-drain", "before-reboot", "after-reboot", "while-rebooting"] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number] | (typeof REBOOT_CRASH_POINTS)[number] | "none";
