// The C library's own dlopen/dlsym, through bun:ffi. The NVML binding asks for each of its ~60
// candidate symbols whether the library exports it, then binds all that exist with one
// linkSymbols call: one set of trampolines, where asking bun:ffi's dlopen symbol by symbol
// (it throws on the first missing one) compiles one per symbol.
import { FFIType, dlopen, type Pointer } from "bun:ffi";

const RTLD_LAZY = 1;
/** glibc's: open only a library this process has loaded already. */
const RTLD_NOLOAD = 4;

const DL_SYMBOLS = {
  dlopen: { args: [FFIType.ptr, FFIType.i32], returns: FFIType.ptr },
  dlsym: { args: [FFIType.ptr, FFIType.ptr], returns: FFIType.ptr },
  dlclose: { args: [FFIType.ptr], returns: FFIType.i32 },
  dlerror: { args: [], returns: FFIType.cstring },
} as const;

type Dl = ReturnType<typeof dlopen<typeof DL_SYMBOLS>>["symbols"];

let dl: Dl | undefined;

/** glibc 2.34+ has dlopen in libc; older ones in libdl. */
function loader(): Dl {
  if (dl) return dl;
  let last: unknown;
  for (const lib of ["libc.so.6", "libdl.so.2"]) {
    try {
      dl = dlopen(lib, DL_SYMBOLS).symbols;
      return dl;
    } catch (err) {
      last = err;
    }
  }
  throw new Error(`the C library's dlopen is not available: ${last instanceof Error ? last.message : String(last)}`);
}

const cstr = (s: string) => Buffer.from(`${s}\0`);

export interface SharedLibrary {
  /** The address of an exported symbol, or null when the library does not export it. */
  symbol(name: string): Pointer | null;
  close(): void;
}

/** dlopen(path, RTLD_LAZY); throws with dlerror()'s text when it fails. */
export function openSharedLibrary(path: string): SharedLibrary {
  const d = loader();
  const handle = d.dlopen(cstr(path), RTLD_LAZY);
  if (handle === null) throw new Error(String(d.dlerror() ?? `dlopen ${path} failed`));
  return sharedLibrary(d, handle);
}

/** The library at `path` if this process has it loaded already (dlopen with RTLD_NOLOAD), else undefined. */
export function loadedSharedLibrary(path: string): SharedLibrary | undefined {
  const d = loader();
  const handle = d.dlopen(cstr(path), RTLD_LAZY | RTLD_NOLOAD);
  if (handle === null) {
    d.dlerror(); // clear it
    return undefined;
  }
  return sharedLibrary(d, handle);
}

function sharedLibrary(d: Dl, handle: NonNullable<ReturnType<Dl["dlopen"]>>): SharedLibrary {
  let open = true;
  return {
    symbol(name) {
      const address = d.dlsym(handle, cstr(name));
      if (address === null) d.dlerror(); // clear it
      return address as Pointer | null;
    },
    close() {
      if (!open) return;
      open = false;
      d.dlclose(handle);
    },
  };
}
