// Opening NVML: each candidate (discovery.ts) loaded in turn (load.ts) until one loads and its
// nvmlInit succeeds, with a record of every path tried and why it was not used. What the NVML
// worker calls first; there is never a fallback to anything that is not a real libnvidia-ml.
import { NVML_SONAME, nvmlLibraryCandidates, type CandidateSource, type NvmlDiscoveryOptions } from "./discovery.ts";
import { NvmlError, type NvmlErrorInfo } from "./errors.ts";
import { NvmlLibrary, type CallObserver } from "./library.ts";
import { loadPath, type LoadFailure } from "./load.ts";

export type LoadOutcome = "loaded" | LoadFailure | "init_failed";

export interface LoadAttempt {
  path: string;
  source: CandidateSource;
  outcome: LoadOutcome;
  /** Why it was not used (absent for the one that was). */
  reason?: string;
  /** For the bare soname: the file the dynamic loader picked, when it can be told. */
  resolvedPath?: string;
  /** For outcome "init_failed": the typed error of nvmlInit. */
  initError?: NvmlErrorInfo;
}

export type NvmlOpenResult =
  | { ok: true; library: NvmlLibrary; attempts: LoadAttempt[] }
  | { ok: false; stage: "load"; attempts: LoadAttempt[]; message: string }
  | { ok: false; stage: "init"; attempts: LoadAttempt[]; message: string; libraryPath: string; error: NvmlErrorInfo };

/**
 * Finds, loads and initialises NVML: tries each candidate in turn until one loads and its
 * nvmlInit succeeds. When none does, the result lists every path tried and why it failed;
 * there is never a fallback to anything that is not a real libnvidia-ml.
 */
export function openNvml(options: NvmlDiscoveryOptions & { init?: boolean; observer?: CallObserver } = {}): NvmlOpenResult {
  const attempts: LoadAttempt[] = [];
  let firstInitFailure: { library: string; error: NvmlErrorInfo } | undefined;
  for (const candidate of nvmlLibraryCandidates(options)) {
    const loaded = loadPath(candidate.path);
    if (!loaded.ok) {
      attempts.push({ path: candidate.path, source: candidate.source, outcome: loaded.outcome, reason: loaded.reason });
      continue;
    }
    const library = new NvmlLibrary(candidate.path, loaded.binding);
    library.observer = options.observer;
    const attempt: LoadAttempt = { path: candidate.path, source: candidate.source, outcome: "loaded" };
    if (loaded.resolvedPath) attempt.resolvedPath = loaded.resolvedPath;
    if (options.init !== false) {
      try {
        library.init();
      } catch (err) {
        if (!(err instanceof NvmlError)) throw err;
        library.close();
        attempts.push({ ...attempt, outcome: "init_failed", reason: err.message, initError: err.info });
        firstInitFailure ??= { library: loaded.resolvedPath ?? candidate.path, error: err.info };
        continue;
      }
    }
    attempts.push(attempt);
    return { ok: true, library, attempts };
  }
  const tried = attempts.map((a) => `${a.path}: ${a.reason ?? a.outcome}`).join("; ");
  if (firstInitFailure) {
    return {
      ok: false,
      stage: "init",
      attempts,
      libraryPath: firstInitFailure.library,
      error: firstInitFailure.error,
      message: `NVML could not be initialised: ${firstInitFailure.error.message} (tried ${tried})`,
    };
  }
  return {
    ok: false,
    stage: "load",
    attempts,
    message: `${NVML_SONAME} could not be loaded from any of ${attempts.length} locations: ${tried}`,
  };
}
