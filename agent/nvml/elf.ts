// Checks a shared library file before it is dlopen'ed. dlopen maps the file's loadable segments
// and touches them; a segment that extends past the end of the file (a truncated copy, a
// half-written driver install) is a SIGBUS that kills the whole process. Reading the ELF
// headers first turns such a file into a reason ("truncated: …") instead of a crash.
import { closeSync, fstatSync, openSync, readSync } from "node:fs";

const ELF_MAGIC = 0x464c457f; // "\x7fELF" read little-endian
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;
const ET_DYN = 3;
const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const HEADER_BYTES = 64;
const PROGRAM_HEADER_BYTES = 56;
const MAX_PROGRAM_HEADERS = 256;
const MACHINES: Readonly<Record<string, number>> = { x64: 62, arm64: 183 };

export type ElfCheck = { ok: true } | { ok: false; reason: string };

/** Whether `path` is a 64-bit little-endian shared object for `arch` whose mapped segments all lie within the file. */
export function checkSharedObject(path: string, arch: string = process.arch): ElfCheck {
  let fd: number;
  try {
    fd = openSync(path, "r");
  } catch (err) {
    return { ok: false, reason: err instanceof Error ? err.message : String(err) };
  }
  try {
    const size = fstatSync(fd).size;
    if (size < HEADER_BYTES) return { ok: false, reason: `not an ELF shared object (${size} bytes)` };
    const header = read(fd, 0, HEADER_BYTES);
    if (header.getUint32(0, true) !== ELF_MAGIC) return { ok: false, reason: "not an ELF file" };
    if (header.getUint8(4) !== ELFCLASS64 || header.getUint8(5) !== ELFDATA2LSB) return { ok: false, reason: "not a 64-bit little-endian ELF file" };
    if (header.getUint16(16, true) !== ET_DYN) return { ok: false, reason: "not a shared object" };
    const machine = header.getUint16(18, true);
    const wanted = MACHINES[arch];
    if (wanted !== undefined && machine !== wanted) return { ok: false, reason: `built for another CPU (ELF machine ${machine}, this is ${arch})` };
    const phoff = Number(header.getBigUint64(32, true));
    const phentsize = header.getUint16(54, true);
    const phnum = header.getUint16(56, true);
    if (phentsize !== PROGRAM_HEADER_BYTES || phnum === 0 || phnum > MAX_PROGRAM_HEADERS) return { ok: false, reason: "malformed ELF program headers" };
    if (phoff + phnum * phentsize > size) return { ok: false, reason: `truncated: the program headers extend past the end of the file (${size} bytes)` };
    const table = read(fd, phoff, phnum * phentsize);
    let loads = 0;
    for (let i = 0; i < phnum; i++) {
      const at = i * phentsize;
      const type = table.getUint32(at, true);
      if (type !== PT_LOAD && type !== PT_DYNAMIC) continue;
      if (type === PT_LOAD) loads++;
      const end = Number(table.getBigUint64(at + 8, true)) + Number(table.getBigUint64(at + 32, true));
      if (end > size) {
        const what = type === PT_LOAD ? `loadable segment ${loads}` : "the dynamic section";
        return { ok: false, reason: `truncated: ${what} extends past the end of the file (needs ${end} bytes, the file has ${size})` };
      }
    }
    return loads > 0 ? { ok: true } : { ok: false, reason: "no loadable segments" };
  } catch (err) {
    return { ok: false, reason: `unreadable: ${err instanceof Error ? err.message : String(err)}` };
  } finally {
    closeSync(fd);
  }
}

function read(fd: number, position: number, length: number): DataView {
  const bytes = new Uint8Array(length);
  const n = readSync(fd, bytes, 0, length, position);
  if (n !== length) throw new Error(`short read at ${position}`);
  return new DataView(bytes.buffer);
}
