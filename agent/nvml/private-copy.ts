// The library file is copied before it is mapped, and the copy is what dlopen maps.
//
// Why: dlopen maps libnvidia-ml.so.1 and the agent calls into the mapping for as long as it
// runs. A driver upgrade that writes over the file in place (`cp`, or an installer that
// truncates and rewrites) changes the pages under the mapping: a truncated file makes every
// touch of a page past its new end a SIGBUS, which kills the process (the agent died with exit
// 135), and a rewritten one runs whatever bytes are there now. Checking the file's identity
// before each call cannot prevent that: the file can change between the check and the call, and
// a signal is nothing JavaScript can catch. A copy nobody else can write cannot change:
// memfd_create gives an anonymous file, sealed against writes, growth and shrinking once the
// bytes are in (F_ADD_SEALS), mapped through /proc/self/fd. The file on disk is then only
// watched (its identity: device, inode, size, mtime) so a new driver is loaded when it is whole.
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, constants, existsSync, fstatSync, openSync, readSync, statSync, writeSync, type Stats } from "node:fs";

/** What identifies one version of a file: a rewrite changes its size or mtime, a replacement its inode. */
export interface FileIdentity {
  path: string;
  dev: number;
  ino: number;
  size: number;
  mtimeMs: number;
}

const identityOf = (path: string, st: Stats): FileIdentity => ({ path, dev: st.dev, ino: st.ino, size: st.size, mtimeMs: st.mtimeMs });

export function sameIdentity(a: FileIdentity | undefined, b: FileIdentity | undefined): boolean {
  if (a === undefined || b === undefined) return a === b;
  return a.dev === b.dev && a.ino === b.ino && a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** The file's identity now; undefined when there is none at the path. */
export function fileIdentity(path: string): FileIdentity | undefined {
  try {
    return identityOf(path, statSync(path));
  } catch {
    return undefined;
  }
}

/** What a path is when it is not a regular file ("a FIFO", "a directory"…), for messages; undefined for a regular file. */
export function notRegularFile(st: Stats): string | undefined {
  if (st.isFile()) return undefined;
  if (st.isFIFO()) return "a FIFO";
  if (st.isCharacterDevice()) return "a character device";
  if (st.isBlockDevice()) return "a block device";
  if (st.isDirectory()) return "a directory";
  if (st.isSocket()) return "a socket";
  return "not a file";
}

const MFD_CLOEXEC = 1;
const MFD_ALLOW_SEALING = 2;
const F_ADD_SEALS = 1033;
/** F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE. */
const ALL_SEALS = 1 | 2 | 4 | 8;

type Libc = ReturnType<
  typeof dlopen<{
    memfd_create: { args: [FFIType.ptr, FFIType.u32]; returns: FFIType.i32 };
    fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32]; returns: FFIType.i32 };
  }>
>["symbols"];
let libc: Libc | null | undefined;

/** memfd_create and fcntl from the C library (glibc 2.27+); null where there are none. */
function cLibrary(): Libc | null {
  if (libc !== undefined) return libc;
  try {
    libc = dlopen("libc.so.6", {
      memfd_create: { args: [FFIType.ptr, FFIType.u32], returns: FFIType.i32 },
      // Variadic in C; its third argument is an int, passed as any int argument is on x86-64 and arm64 Linux.
      fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i32], returns: FFIType.i32 },
    }).symbols;
  } catch {
    libc = null;
  }
  return libc;
}

export type PrivateCopy =
  | {
      ok: true;
      /** What to hand dlopen: the sealed copy (/proc/self/fd/N), or the file itself where no copy can be made. */
      mapPath: string;
      /** The file on disk as it was when copied. */
      source: FileIdentity;
      /** Why the file itself is mapped (no memfd on this system); absent when the copy is mapped. */
      inPlace?: string;
      /** Closes the copy's descriptor: call it after dlopen (the mapping keeps the copy). */
      close(): void;
    }
  | { ok: false; reason: string };

/**
 * Reads `path` whole (a regular file only: a FIFO would block the read forever) and, unless it
 * changed while it was read, puts it in a sealed anonymous file.
 */
export function privateCopy(path: string): PrivateCopy {
  let fd: number;
  try {
    // Non-blocking: opening a FIFO for reading blocks until a writer comes; this refuses it at once.
    fd = openSync(path, constants.O_RDONLY | constants.O_NONBLOCK);
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
  let bytes: Buffer;
  let source: FileIdentity;
  try {
    const before = fstatSync(fd);
    const what = notRegularFile(before);
    if (what !== undefined) return { ok: false, reason: `${path} is ${what}, not a regular file` };
    source = identityOf(path, before);
    bytes = Buffer.allocUnsafe(before.size);
    let got = 0;
    while (got < bytes.length) {
      const n = readSync(fd, bytes, got, bytes.length - got, got);
      if (n === 0) break;
      got += n;
    }
    const after = identityOf(path, fstatSync(fd));
    if (got !== before.size || !sameIdentity(source, after)) {
      return {
        ok: false,
        reason: `changed while it was read (${got} of ${before.size} bytes, now ${after.size}): being written, it is tried again once it stops changing`,
      };
    }
  } catch (err) {
    return { ok: false, reason: `unreadable: ${err instanceof Error ? err.message : String(err)}` };
  } finally {
    closeSync(fd);
  }
  const c = cLibrary();
  const copy = c === null ? -1 : c.memfd_create(Buffer.from("libnvidia-ml.so.1\0"), MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (copy < 0) return { ok: true, mapPath: path, source, inPlace: "memfd_create is not available on this system", close: () => undefined };
  try {
    let written = 0;
    while (written < bytes.length) written += writeSync(copy, bytes, written, bytes.length - written, written);
    if (c!.fcntl(copy, F_ADD_SEALS, ALL_SEALS) !== 0) throw new Error("sealing the copy failed");
  } catch (err) {
    closeSync(copy);
    return { ok: false, reason: `cannot copy it to memory: ${err instanceof Error ? err.message : String(err)}` };
  }
  const mapPath = `/proc/self/fd/${copy}`;
  if (!existsSync(mapPath)) {
    closeSync(copy);
    return { ok: true, mapPath: path, source, inPlace: "/proc is not mounted, so a copy in memory cannot be mapped", close: () => undefined };
  }
  let open = true;
  return {
    ok: true,
    mapPath,
    source,
    close() {
      if (open) closeSync(copy);
      open = false;
    },
  };
}
