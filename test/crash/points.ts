// Where the crash tests kill the reconciler: around each side effect of a replacement.
export const CRASH_POINTS = ["before-launch", "after-launch", "after-cordon", "during-drain", "before-terminate", "after-terminate", "after-confirm-gone"] as const;
export type CrashPoint = (typeof CRASH_POINTS)[number] | "none";
