// Protocol Buffers wire format, driven by the schema that build.rs generates from the .proto:
// messages are plain objects keyed by the .proto field names, enums are their value names
// ("ACTION_NONE"), 64-bit integers are Numbers (timings and counts stay far below 2^53).

import { schema } from "./schema.js";

const VARINT = 0, I64 = 1, LEN = 2, I32 = 5;
const PACKABLE = new Set(["double", "float", "int64", "uint64", "int32", "fixed64", "fixed32", "bool", "uint32", "enum", "sfixed32", "sfixed64", "sint32", "sint64"]);
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

function fieldsOf(type) {
  const fields = schema.messages[type];
  if (!fields) throw new Error(`unknown message type ${type}`);
  return fields.map(([name, number, kind, repeated, typeName, optional]) => ({ name, number, kind, repeated, typeName, optional }));
}

function wireType(kind) {
  switch (kind) {
    case "double": case "fixed64": case "sfixed64": return I64;
    case "float": case "fixed32": case "sfixed32": return I32;
    case "string": case "bytes": case "message": return LEN;
    default: return VARINT;
  }
}

class Writer {
  constructor() { this.bytes = []; }
  varint(value) {
    let v = BigInt.asUintN(64, BigInt(value));
    while (v > 0x7fn) { this.bytes.push(Number(v & 0x7fn) | 0x80); v >>= 7n; }
    this.bytes.push(Number(v));
  }
  tag(number, wire) { this.varint((number << 3) | wire); }
  raw(array) { for (const b of array) this.bytes.push(b); }
  fixed(size, write) { const view = new DataView(new ArrayBuffer(size)); write(view); this.raw(new Uint8Array(view.buffer)); }
  finish() { return Uint8Array.from(this.bytes); }
}

function enumNumber(typeName, value) {
  if (typeof value === "number") return value;
  const number = schema.enums[typeName]?.[value];
  if (number === undefined) throw new Error(`${value} is not a value of ${typeName}`);
  return number;
}

function writeScalar(w, field, value) {
  switch (field.kind) {
    case "double": return w.fixed(8, (v) => v.setFloat64(0, value, true));
    case "float": return w.fixed(4, (v) => v.setFloat32(0, value, true));
    case "fixed64": case "sfixed64": return w.fixed(8, (v) => v.setBigUint64(0, BigInt.asUintN(64, BigInt(value)), true));
    case "fixed32": return w.fixed(4, (v) => v.setUint32(0, value, true));
    case "sfixed32": return w.fixed(4, (v) => v.setInt32(0, value, true));
    case "bool": return w.varint(value ? 1 : 0);
    case "enum": return w.varint(enumNumber(field.typeName, value));
    case "sint32": case "sint64": { const v = BigInt(value); return w.varint((v << 1n) ^ (v < 0n ? -1n : 0n)); }
    case "string": { const b = utf8.encode(value); w.varint(b.length); return w.raw(b); }
    case "bytes": w.varint(value.length); return w.raw(value);
    case "message": { const b = encode(field.typeName, value); w.varint(b.length); return w.raw(b); }
    default: return w.varint(value); // int32, int64, uint32, uint64
  }
}

function isDefault(field, value) {
  if (field.kind === "message") return false;
  if (field.kind === "enum") return enumNumber(field.typeName, value) === 0;
  return value === 0 || value === false || value === "" || (field.kind === "bytes" && value.length === 0);
}

/** Encodes `message` (a plain object) as the message type `type` (".calmline.v1.Turn"). */
export function encode(type, message) {
  const w = new Writer();
  for (const field of fieldsOf(type)) {
    let value = message?.[field.name];
    if (value === undefined || value === null) continue;
    if (schema.maps.includes(field.typeName)) value = Object.entries(value).map(([key, v]) => ({ key, value: v }));
    if (field.repeated) {
      if (!Array.isArray(value)) throw new Error(`${type}.${field.name} must be a list`);
      if (PACKABLE.has(field.kind)) {
        if (value.length === 0) continue;
        const packed = new Writer();
        for (const v of value) writeScalar(packed, field, v);
        const bytes = packed.finish();
        w.tag(field.number, LEN); w.varint(bytes.length); w.raw(bytes);
      } else {
        for (const v of value) { w.tag(field.number, wireType(field.kind)); writeScalar(w, field, v); }
      }
      continue;
    }
    if (!field.optional && isDefault(field, value)) continue; // proto3: defaults are not sent
    w.tag(field.number, wireType(field.kind));
    writeScalar(w, field, value);
  }
  return w.finish();
}

class Reader {
  constructor(bytes) { this.bytes = bytes; this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength); this.at = 0; }
  done() { return this.at >= this.bytes.length; }
  varint() {
    let result = 0n, shift = 0n;
    for (;;) {
      if (this.at >= this.bytes.length) throw new Error("truncated varint");
      const b = this.bytes[this.at++];
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return result;
      shift += 7n;
    }
  }
  take(n) {
    if (this.at + n > this.bytes.length) throw new Error("truncated field");
    const slice = this.bytes.subarray(this.at, this.at + n);
    this.at += n;
    return slice;
  }
  skip(wire) {
    if (wire === VARINT) this.varint();
    else if (wire === I64) this.take(8);
    else if (wire === I32) this.take(4);
    else if (wire === LEN) this.take(Number(this.varint()));
    else throw new Error(`unsupported wire type ${wire}`);
  }
}

function enumName(typeName, number) {
  const values = schema.enums[typeName] ?? {};
  return Object.keys(values).find((name) => values[name] === number) ?? number;
}

function readScalar(r, field) {
  const fixed = (n, read) => { const bytes = r.take(n); return read(new DataView(bytes.buffer, bytes.byteOffset, n)); };
  switch (field.kind) {
    case "double": return fixed(8, (v) => v.getFloat64(0, true));
    case "float": return fixed(4, (v) => v.getFloat32(0, true));
    case "fixed64": return fixed(8, (v) => Number(v.getBigUint64(0, true)));
    case "sfixed64": return fixed(8, (v) => Number(v.getBigInt64(0, true)));
    case "fixed32": return fixed(4, (v) => v.getUint32(0, true));
    case "sfixed32": return fixed(4, (v) => v.getInt32(0, true));
    case "bool": return r.varint() !== 0n;
    case "enum": return enumName(field.typeName, Number(BigInt.asIntN(32, r.varint())));
    case "int32": return Number(BigInt.asIntN(32, r.varint()));
    case "int64": return Number(BigInt.asIntN(64, r.varint()));
    case "sint32": case "sint64": { const v = r.varint(); return Number((v >> 1n) ^ -(v & 1n)); }
    case "string": return fromUtf8.decode(r.take(Number(r.varint())));
    case "bytes": return r.take(Number(r.varint())).slice();
    case "message": return decode(field.typeName, r.take(Number(r.varint())));
    default: return Number(r.varint()); // uint32, uint64
  }
}

function defaultOf(field) {
  if (field.repeated) return schema.maps.includes(field.typeName) ? {} : [];
  switch (field.kind) {
    case "message": return null;
    case "string": return "";
    case "bool": return false;
    case "bytes": return new Uint8Array();
    case "enum": return enumName(field.typeName, 0);
    default: return field.optional ? null : 0;
  }
}

/** Decodes `bytes` as the message type `type`; absent fields get proto3 defaults. */
export function decode(type, bytes) {
  const fields = fieldsOf(type);
  const message = {};
  for (const field of fields) message[field.name] = field.optional ? null : defaultOf(field);
  const r = new Reader(bytes);
  while (!r.done()) {
    const tag = Number(r.varint());
    const number = tag >>> 3, wire = tag & 7;
    const field = fields.find((f) => f.number === number);
    if (!field) { r.skip(wire); continue; } // a newer server's field
    if (field.repeated && wire === LEN && PACKABLE.has(field.kind)) {
      const packed = new Reader(r.take(Number(r.varint())));
      while (!packed.done()) message[field.name].push(readScalar(packed, field));
    } else if (schema.maps.includes(field.typeName)) {
      const entry = readScalar(r, field);
      message[field.name][entry.key] = entry.value;
    } else if (field.repeated) {
      message[field.name].push(readScalar(r, field));
    } else {
      message[field.name] = readScalar(r, field);
    }
  }
  return message;
}
