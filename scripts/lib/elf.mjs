// @ts-check
/**
 * Reads and rewrites the run-time library search path (DT_RUNPATH / DT_RPATH) of an ELF64
 * little-endian shared object in place, the way chrpath does: the new path is written over the old
 * string in .dynstr, so it must not be longer. No patchelf needed where the prebuilt addon is made.
 */
import { readFileSync, writeFileSync } from 'node:fs';

const PT_LOAD = 1;
const PT_DYNAMIC = 2;
const DT_NULL = 0n;
const DT_NEEDED = 1n;
const DT_STRTAB = 5n;
const DT_RPATH = 15n;
const DT_RUNPATH = 29n;
const DT_SONAME = 14n;
/** Dynamic entries whose value is an offset into the string table. */
const STRING_TAGS = [DT_NEEDED, DT_SONAME, DT_RPATH, DT_RUNPATH];
const SHT_DYNSYM = 11;

/**
 * @param {Buffer} buf
 * @param {string} file
 */
function parse(buf, file) {
  if (buf.readUInt32BE(0) !== 0x7f454c46) throw new Error(`${file} is not an ELF file`);
  if (buf[4] !== 2 || buf[5] !== 1) throw new Error(`${file}: only 64-bit little-endian ELF files are supported`);
  const phoff = Number(buf.readBigUInt64LE(0x20));
  const phentsize = buf.readUInt16LE(0x36);
  const phnum = buf.readUInt16LE(0x38);
  /** @type {{ type: number, offset: number, vaddr: number, filesz: number }[]} */
  const segments = [];
  for (let i = 0; i < phnum; i++) {
    const o = phoff + i * phentsize;
    segments.push({
      type: buf.readUInt32LE(o),
      offset: Number(buf.readBigUInt64LE(o + 8)),
      vaddr: Number(buf.readBigUInt64LE(o + 16)),
      filesz: Number(buf.readBigUInt64LE(o + 32)),
    });
  }
  const dynamic = segments.find((s) => s.type === PT_DYNAMIC);
  if (!dynamic) throw new Error(`${file} has no dynamic section`);
  /** @param {number} vaddr */
  const fileOffset = (vaddr) => {
    const seg = segments.find((s) => s.type === PT_LOAD && vaddr >= s.vaddr && vaddr < s.vaddr + s.filesz);
    if (!seg) throw new Error(`${file}: address 0x${vaddr.toString(16)} is in no loaded segment`);
    return vaddr - seg.vaddr + seg.offset;
  };
  /** @type {{ tag: bigint, value: number }[]} */
  const entries = [];
  for (let o = dynamic.offset; o + 16 <= dynamic.offset + dynamic.filesz; o += 16) {
    const tag = buf.readBigInt64LE(o);
    if (tag === DT_NULL) break;
    entries.push({ tag, value: Number(buf.readBigUInt64LE(o + 8)) });
  }
  const strtab = entries.find((e) => e.tag === DT_STRTAB);
  if (!strtab) throw new Error(`${file} has no dynamic string table`);
  return { entries, strtab: fileOffset(strtab.value) };
}

/** @param {Buffer} buf @param {number} at */
function cString(buf, at) {
  const end = buf.indexOf(0, at);
  return buf.toString('utf8', at, end);
}

/**
 * The file's run-time search path, or null when it has none.
 * @param {string} file
 * @returns {string | null}
 */
export function readRunpath(file) {
  const buf = readFileSync(file);
  const { entries, strtab } = parse(buf, file);
  const entry = entries.find((e) => e.tag === DT_RUNPATH) ?? entries.find((e) => e.tag === DT_RPATH);
  return entry ? cString(buf, strtab + entry.value) : null;
}

/**
 * The libraries the file needs (DT_NEEDED), in order.
 * @param {string} file
 * @returns {string[]}
 */
export function readNeeded(file) {
  const buf = readFileSync(file);
  const { entries, strtab } = parse(buf, file);
  return entries.filter((e) => e.tag === DT_NEEDED).map((e) => cString(buf, strtab + e.value));
}

/**
 * Replaces the run-time search path with `runpath` (no longer than the old one).
 * @param {string} file
 * @param {string} runpath
 */
export function setRunpath(file, runpath) {
  const buf = readFileSync(file);
  const { entries, strtab } = parse(buf, file);
  const targets = entries.filter((e) => e.tag === DT_RUNPATH || e.tag === DT_RPATH);
  if (targets.length === 0) throw new Error(`${file} has no RUNPATH or RPATH to replace`);
  for (const entry of targets) {
    const at = strtab + entry.value;
    const old = cString(buf, at);
    const bytes = Buffer.from(runpath, 'utf8');
    if (bytes.length > Buffer.byteLength(old)) throw new Error(`${file}: the new run path (${runpath}) is longer than the old one (${old})`);
    // The linker may share a string's tail with another name: refuse if anything points inside it.
    const inside = (/** @type {number} */ off) => off > entry.value && off <= entry.value + Buffer.byteLength(old);
    const names = entries.filter((e) => e !== entry && STRING_TAGS.includes(e.tag)).map((e) => e.value);
    if (names.some(inside) || dynsymNames(buf).some(inside)) {
      throw new Error(`${file}: another name shares the run path's bytes; use patchelf instead`);
    }
    buf.fill(0, at, at + Buffer.byteLength(old));
    bytes.copy(buf, at);
  }
  writeFileSync(file, buf);
}

/**
 * String-table offsets of every dynamic symbol's name (from the section headers; none when stripped of them).
 * @param {Buffer} buf
 * @returns {number[]}
 */
function dynsymNames(buf) {
  const shoff = Number(buf.readBigUInt64LE(0x28));
  const shentsize = buf.readUInt16LE(0x3a);
  const shnum = buf.readUInt16LE(0x3c);
  /** @type {number[]} */
  const names = [];
  for (let i = 0; i < shnum && shoff > 0; i++) {
    const o = shoff + i * shentsize;
    if (buf.readUInt32LE(o + 4) !== SHT_DYNSYM) continue;
    const offset = Number(buf.readBigUInt64LE(o + 24));
    const size = Number(buf.readBigUInt64LE(o + 32));
    const entsize = Number(buf.readBigUInt64LE(o + 56)) || 24;
    for (let s = offset; s + entsize <= offset + size; s += entsize) names.push(buf.readUInt32LE(s));
  }
  return names;
}
