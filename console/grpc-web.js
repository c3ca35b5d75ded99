// A gRPC-web client for calmline.v1.Triage's unary methods (the browser cannot open the
// bidirectional Converse stream, so the console calls Analyze and carries the conversation's
// state itself, as the contract describes). Framing per the gRPC-web protocol: a 5-byte prefix
// (flags, big-endian length) per message; flag 0x80 marks the trailers frame.

import { schema } from "./schema.js";
import { encode, decode } from "./protobuf.js";

/** A failed call, with the gRPC status code name ("INVALID_ARGUMENT") and the server's message. */
export class GrpcError extends Error {
  constructor(code, message) {
    super(`${code}: ${message}`);
    this.code = code;
    this.grpcMessage = message;
  }
}

const CODES = ["OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"];

function frame(bytes) {
  const framed = new Uint8Array(5 + bytes.length);
  new DataView(framed.buffer).setUint32(1, bytes.length);
  framed.set(bytes, 5);
  return framed;
}

function parseTrailers(bytes) {
  const trailers = {};
  for (const line of new TextDecoder().decode(bytes).split("\r\n")) {
    const colon = line.indexOf(":");
    if (colon > 0) trailers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
  }
  return trailers;
}

function check(status, message) {
  if (status === undefined || status === null || status === "" || Number(status) === 0) return;
  throw new GrpcError(CODES[Number(status)] ?? `code ${status}`, decodeURIComponent(message ?? ""));
}

export class TriageClient {
  /** `base`: the server's origin ("" for the page's own); `apiKey`: sent as x-api-key when set. */
  constructor(base = "", apiKey = "") {
    this.base = base;
    this.apiKey = apiKey;
  }

  /** Calls a unary method ("Analyze", "GetInfo") with a plain-object request. */
  async call(method, request, { timeoutMs = 10000 } = {}) {
    const path = `calmline.v1.Triage/${method}`;
    const [input, output, clientStreaming, serverStreaming] = schema.methods[path] ?? [];
    if (!input || clientStreaming || serverStreaming) throw new Error(`${method} is not a unary method of calmline.v1.Triage`);
    const headers = { "content-type": "application/grpc-web+proto", "x-grpc-web": "1", "grpc-timeout": `${timeoutMs}m` };
    if (this.apiKey) headers["x-api-key"] = this.apiKey;
    let response;
    try {
      response = await fetch(`${this.base}/${path}`, { method: "POST", headers, body: frame(encode(input, request)) });
    } catch (e) {
      throw new GrpcError("UNAVAILABLE", `the server cannot be reached (${e.message})`);
    }
    if (!response.ok) throw new GrpcError("UNAVAILABLE", `HTTP ${response.status}`);
    // A call that fails before any message answers with the status in the headers.
    check(response.headers.get("grpc-status"), response.headers.get("grpc-message"));
    const body = new Uint8Array(await response.arrayBuffer());
    let reply = null;
    for (let at = 0; at < body.length;) {
      if (at + 5 > body.length) throw new GrpcError("INTERNAL", "truncated gRPC-web frame");
      const flags = body[at];
      const length = new DataView(body.buffer, body.byteOffset + at + 1, 4).getUint32(0);
      const payload = body.subarray(at + 5, at + 5 + length);
      at += 5 + length;
      if (flags & 0x80) {
        const trailers = parseTrailers(payload);
        check(trailers["grpc-status"], trailers["grpc-message"]);
      } else {
        reply = decode(output, payload);
      }
    }
    if (!reply) throw new GrpcError("INTERNAL", "the server sent no message");
    return reply;
  }

  getInfo() {
    return this.call("GetInfo", {});
  }

  /** One turn; `state` is the previous reply's state (null for the first turn). */
  analyze(turn, state, locale) {
    return this.call("Analyze", { turn, state, locale });
  }
}
