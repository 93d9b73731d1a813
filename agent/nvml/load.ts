// Loading one library file: the sealed private copy that is mapped (private-copy.ts says why), the
// ELF check before dlopen, dlopen itself, and the symbol binding: every NVML function the file
// exports bound with one set of bun:ffi trampolines, which is also the capability probe (which
// optional functions this driver has, and under which versioned name). The result is what an
// NvmlLibrary (library.ts) calls through; nothing here calls NVML.
import { linkSymbols, type FFIFunction, type Pointer } from "bun:ffi";
import { existsSync, readFileSync, statSync } from "node:fs";
import { loadedSharedLibrary, openSharedLibrary, type SharedLibrary } from "./dl.ts";
import { checkSharedObject } from "./elf.ts";
import { fileIdentity, notRegularFile, privateCopy, type FileIdentity, type PrivateCopy } from "./private-copy.ts";
import { findOnLoaderPath } from "./loader-path.ts";
import { NVML_FUNCTIONS, NVML_FUNCTION_KEYS, type NvmlFunctionKey } from "./symbols.ts";
import type { NvmlCapabilities } from "./types.ts";

export type FFIArg = number | bigint | boolean | null | NodeJS.TypedArray;
type RawFunction = (...args: FFIArg[]) => unknown;

export interface BoundFunction {
  symbol: string;
  call: RawFunction;
}

/** A library file loaded and its functions bound: what an NvmlLibrary is made from. */
export interface NvmlBinding {
  /** Every function the file exports, by key, with the symbol it resolved to. */
  bound: Partial<Record<NvmlFunctionKey, BoundFunction>>;
  capabilities: NvmlCapabilities;
  /** Releases the trampolines and the dlopen handle. */
  release: () => void;
  /** The file on disk it was loaded from, as it was then; unknown only for a soname the loader found alone. */
  file: FileIdentity | undefined;
  /** Why the file itself is mapped rather than a private copy; undefined when the copy is. */
  mappedInPlace: string | undefined;
}

/** Why a path was not loaded. bad_file: refused before dlopen (not a shared object for this CPU, or truncated: dlopen would crash on it). */
export type LoadFailure = "missing" | "bad_file" | "dlopen_failed" | "not_nvml";

function errorMessage(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** `PATH is a FIFO, not a regular file`, or undefined for a regular file (and for one that cannot be looked at: loading says why). */
function notRegular(path: string): string | undefined {
  try {
    const what = notRegularFile(statSync(path));
    return what === undefined ? undefined : `${path} is ${what}, not a regular file`;
  } catch {
    return undefined;
  }
}

/** Finds the file the dynamic loader mapped for `soname`, if exactly one such file is mapped. */
function mappedLibraryPath(soname: string): string | undefined {
  try {
    const paths = new Set<string>();
    for (const line of readFileSync("/proc/self/maps", "utf8").split("\n")) {
      const i = line.indexOf("/");
      if (i >= 0 && line.endsWith(`/${soname}`)) paths.add(line.slice(i));
    }
    return paths.size === 1 ? [...paths][0] : undefined;
  } catch {
    return undefined;
  }
}

export type LoadResult = { ok: true; binding: NvmlBinding; resolvedPath?: string } | { ok: false; outcome: LoadFailure; reason: string };

/**
 * Copies the file (a bare soname: the file the loader would pick) to a sealed private copy
 * (private-copy.ts says why), checks the copy, dlopens it, and binds every function it exports
 * with one set of trampolines. The core set must resolve.
 */
export function loadPath(path: string): LoadResult {
  const file = path.includes("/") ? path : findOnLoaderPath(path);
  if (path.includes("/") && !existsSync(path)) return { ok: false, outcome: "missing", reason: "no such file" };
  // Not a regular file (a FIFO: even looking for it among loaded libraries opens it, and waits).
  const what = file === undefined ? undefined : notRegular(file);
  if (what !== undefined) return { ok: false, outcome: "bad_file", reason: file === path ? what : `${file}: ${what}` };
  // Loaded already by something else in this process (a test's control handle on the fake
  // library): that instance is used, since a copy would be a second one with state of its own.
  const already = file === undefined ? undefined : loadedSharedLibrary(file);
  if (already !== undefined) return bind(path, already, file, { inPlace: "this process had it loaded already", source: fileIdentity(file!) });
  let mapPath = path;
  let copy: Extract<PrivateCopy, { ok: true }> | undefined;
  if (file !== undefined) {
    const copied = privateCopy(file);
    if (!copied.ok) return { ok: false, outcome: "bad_file", reason: file === path ? copied.reason : `${file}: ${copied.reason}` };
    copy = copied;
    const elf = checkSharedObject(copy.mapPath);
    if (!elf.ok) {
      copy.close();
      return { ok: false, outcome: "bad_file", reason: file === path ? elf.reason : `${file}: ${elf.reason}` };
    }
    mapPath = copy.mapPath;
  }
  let shared: SharedLibrary;
  try {
    shared = openSharedLibrary(mapPath);
  } catch (err) {
    return { ok: false, outcome: "dlopen_failed", reason: errorMessage(err) };
  } finally {
    copy?.close(); // the mapping keeps the copy
  }
  const resolved = path.includes("/") ? undefined : (file ?? mappedLibraryPath(path));
  if (copy !== undefined)
    return bind(path, shared, resolved, copy.inPlace === undefined ? { source: copy.source } : { source: copy.source, inPlace: copy.inPlace });
  // The file on disk it came from, watched for a new version; unknown only for a soname the loader found alone.
  return bind(path, shared, resolved, {
    inPlace: "the dynamic loader found the file itself",
    ...(resolved === undefined ? {} : { source: fileIdentity(resolved) }),
  });
}

/** Binds every function `shared` exports with one set of trampolines; the core set must resolve. */
function bind(path: string, shared: SharedLibrary, resolved: string | undefined, mapped: { source?: FileIdentity | undefined; inPlace?: string }): LoadResult {
  const symbols: Record<string, boolean> = {};
  const chosen: Partial<Record<NvmlFunctionKey, { symbol: string; ptr: Pointer }>> = {};
  const missingCore: string[] = [];
  for (const key of NVML_FUNCTION_KEYS) {
    const spec = NVML_FUNCTIONS[key];
    for (const symbol of spec.names) {
      const ptr = shared.symbol(symbol);
      symbols[symbol] = ptr !== null;
      if (ptr !== null && !chosen[key]) chosen[key] = { symbol, ptr };
    }
    if (spec.core === true && !chosen[key]) missingCore.push(spec.names.join(" or "));
  }
  if (missingCore.length > 0) {
    shared.close();
    return { ok: false, outcome: "not_nvml", reason: `not a usable NVML library: missing ${missingCore.join(", ")}` };
  }
  const definitions: Record<string, FFIFunction> = {};
  for (const key of NVML_FUNCTION_KEYS) {
    const c = chosen[key];
    if (c) definitions[key] = { ptr: c.ptr, args: [...NVML_FUNCTIONS[key].args], returns: NVML_FUNCTIONS[key].returns };
  }
  const linked = linkSymbols(definitions);
  const bound: Partial<Record<NvmlFunctionKey, BoundFunction>> = {};
  const functions: Record<string, string | null> = {};
  for (const key of NVML_FUNCTION_KEYS) {
    const c = chosen[key];
    const call = linked.symbols[key];
    if (c && call) bound[key] = { symbol: c.symbol, call: call as unknown as RawFunction };
    functions[key] = c?.symbol ?? null;
  }
  const binding: NvmlBinding = {
    bound,
    capabilities: { symbols, functions },
    release: () => {
      linked.close();
      shared.close();
    },
    file: mapped.source,
    mappedInPlace: mapped.inPlace,
  };
  const result: LoadResult = { ok: true, binding };
  if (resolved !== undefined && !path.includes("/")) result.resolvedPath = resolved;
  return result;
}
