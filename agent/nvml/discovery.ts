// Where libnvidia-ml.so.1 may be: the candidate paths, in the order they are tried (the explicit
// --nvml-library / NAVARCH_NVML_LIBRARY, a driver root, the usual host and container locations,
// the bare soname), and the check `navarch-node` makes on an explicit path before it starts. Pure
// path logic: nothing here loads anything (load.ts loads one path, open.ts tries them in turn).
import { statSync, type Stats } from "node:fs";
import { join } from "node:path";
import { notRegularFile } from "./private-copy.ts";

export const NVML_SONAME = "libnvidia-ml.so.1";

export type CandidateSource = "option" | "env" | "driver-root" | "default" | "loader";

export interface LibraryCandidate {
  path: string;
  source: CandidateSource;
}

export interface NvmlDiscoveryOptions {
  /** An explicit library (file, or a directory holding libnvidia-ml.so.1); tried first. */
  libraryPath?: string;
  /** A driver root such as /run/nvidia/driver; its usr/lib* directories are tried next. */
  driverRoot?: string;
  /** Try only the explicit path (option or NAVARCH_NVML_LIBRARY), nothing else. */
  explicitOnly?: boolean;
  /** Environment to read NAVARCH_NVML_LIBRARY / NAVARCH_NVIDIA_DRIVER_ROOT from (process.env). */
  env?: Readonly<Record<string, string | undefined>>;
  /** process.arch by default. */
  arch?: string;
}

/** The Debian multiarch directory name for an architecture. */
function multiarchTriple(arch: string): string {
  return arch === "arm64" ? "aarch64-linux-gnu" : arch === "x64" ? "x86_64-linux-gnu" : `${arch}-linux-gnu`;
}

function libDirs(root: string, triple: string): string[] {
  return [`usr/lib/${triple}`, "usr/lib64", "usr/lib"].map((d) => join(root, d, NVML_SONAME));
}

/**
 * Where to look for libnvidia-ml.so.1, in order: the explicit path (option, else env
 * NAVARCH_NVML_LIBRARY), the driver root (option, else env NAVARCH_NVIDIA_DRIVER_ROOT), the usual
 * host and container driver locations, and finally the bare soname through the dynamic loader.
 * The fake library is never among the defaults: it is only ever used when named explicitly.
 */
export function nvmlLibraryCandidates(options: NvmlDiscoveryOptions = {}): LibraryCandidate[] {
  const env = options.env ?? process.env;
  const triple = multiarchTriple(options.arch ?? process.arch);
  const out: LibraryCandidate[] = [];
  const add = (path: string, source: CandidateSource) => {
    if (!out.some((c) => c.path === path)) out.push({ path, source });
  };
  const explicit = options.libraryPath ?? env.NAVARCH_NVML_LIBRARY;
  if (explicit) {
    let path = explicit;
    try {
      if (statSync(explicit).isDirectory()) path = join(explicit, NVML_SONAME);
    } catch {
      // reported when loading
    }
    add(path, options.libraryPath !== undefined ? "option" : "env");
    if (options.explicitOnly) return out;
  }
  const root = options.driverRoot ?? env.NAVARCH_NVIDIA_DRIVER_ROOT;
  if (root) for (const p of libDirs(root, triple)) add(p, "driver-root");
  for (const p of libDirs("/", triple)) add(p, "default");
  for (const p of libDirs("/run/nvidia/driver", triple)) add(p, "default");
  add(`/usr/local/nvidia/lib64/${NVML_SONAME}`, "default");
  add(`/home/kubernetes/bin/nvidia/lib64/${NVML_SONAME}`, "default");
  add(NVML_SONAME, "loader");
  return out;
}

/**
 * Why an explicit library path (--nvml-library) can never be loaded: it is a FIFO, a device or
 * a socket (reading a FIFO would wait forever for a writer), or a directory whose
 * libnvidia-ml.so.1 is one. Undefined for a regular file, a directory holding one, or a path
 * with nothing there yet (a driver may be installed later).
 */
export function explicitLibraryProblem(path: string): string | undefined {
  let st: Stats;
  try {
    st = statSync(path);
  } catch {
    return undefined;
  }
  if (st.isDirectory()) {
    const inside = join(path, NVML_SONAME);
    try {
      const what = notRegularFile(statSync(inside));
      return what === undefined ? undefined : `${inside} is ${what}, not a regular file`;
    } catch {
      return undefined;
    }
  }
  const what = notRegularFile(st);
  return what === undefined ? undefined : `${path} is ${what}, not a regular file`;
}
