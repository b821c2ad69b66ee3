/**
 * The floor for the redis section of `bench/servers.ts`: a raw `node:net` server answering the commands
 * `redis-benchmark -t ping,set,get` sends (inline PING, and PING, SET, GET as RESP arrays) with a hand-written
 * parser, all the answers to one incoming chunk in one write. What Node itself costs per request, below any
 * framework.
 *
 * Run: node bench/peers/raw-redis.ts PORT
 */
import { Buffer } from "node:buffer"
import { listen, type Peer } from "./listen.ts"

const store = new Map<string, Buffer>()
const PONG = Buffer.from("+PONG\r\n")
const OK = Buffer.from("+OK\r\n")
const NIL = Buffer.from("$-1\r\n")
const CRLF = Buffer.from("\r\n")
const UNKNOWN = Buffer.from("-ERR unknown command\r\n")

/** Answers one command into `out`. */
const execute = (args: ReadonlyArray<Buffer>, out: Array<Buffer>): void => {
  const name = args[0]?.toString("latin1").toUpperCase()
  if (name === "PING") out.push(PONG)
  else if (name === "SET" && args.length >= 3) {
    store.set(args[1].toString("latin1"), Buffer.from(args[2]))
    out.push(OK)
  } else if (name === "GET" && args.length === 2) {
    const value = store.get(args[1].toString("latin1"))
    if (value === undefined) out.push(NIL)
    else out.push(Buffer.from(`$${value.length}\r\n`, "latin1"), value, CRLF)
  } else out.push(UNKNOWN)
}

/** Answers the complete commands at the start of `buf`; returns where the first incomplete one starts. */
export const parse = (buf: Buffer, out: Array<Buffer>): number => {
  let pos = 0
  while (pos < buf.length) {
    const eol = buf.indexOf(13, pos)
    if (eol < 0 || eol + 1 >= buf.length) return pos
    if (buf[pos] !== 42) {
      // inline command: words up to CRLF
      execute(buf.toString("latin1", pos, eol).split(" ").filter((w) => w !== "").map((w) => Buffer.from(w)), out)
      pos = eol + 2
      continue
    }
    const count = Number(buf.toString("latin1", pos + 1, eol))
    const args: Array<Buffer> = []
    let at = eol + 2
    for (let i = 0; i < count; i++) {
      const end = buf.indexOf(13, at)
      if (end < 0 || end + 1 >= buf.length) return pos
      const length = Number(buf.toString("latin1", at + 1, end))
      const start = end + 2
      if (start + length + 2 > buf.length) return pos
      args.push(buf.subarray(start, start + length))
      at = start + length + 2
    }
    execute(args, out)
    pos = at
  }
  return pos
}

/** What the server does with each read of `stream`: answers its complete commands in one write. */
export const reader = (stream: Peer) => {
  let pending: Buffer | undefined
  return (chunk: Buffer): void => {
    const buf = pending === undefined ? chunk : Buffer.concat([pending, chunk])
    const out: Array<Buffer> = []
    const used = parse(buf, out)
    pending = used < buf.length ? Buffer.from(buf.subarray(used)) : undefined
    if (out.length > 0) stream.write(out.length === 1 ? out[0] : Buffer.concat(out))
  }
}

// Run as a script, not when imported (effect-fiber.ts reuses `reader`).
if (import.meta.main) {
  listen("raw-redis", Number(process.argv[2] ?? 6381), (socket) => socket.on("data", reader(socket)))
}
