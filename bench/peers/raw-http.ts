/**
 * The floor for the http11 section of `bench/servers.ts`: a raw `node:net` server that answers every request
 * head (up to `\r\n\r\n`) with the bytes `examples/http11.ts` sends for a keep-alive GET, all answers to one
 * incoming chunk in one write. It parses nothing else: what is left is the cost of Node's sockets.
 *
 * Run: node bench/peers/raw-http.ts PORT
 */
import { Buffer } from "node:buffer"
import { listen, type Peer } from "./listen.ts"

const HEAD_END = Buffer.from("\r\n\r\n")
const cache = { second: -1, answer: Buffer.alloc(0), answers: [] as Array<Buffer> }

/** `n` answers in one buffer, made once per second and per count (the Date header changes each second). */
export const answers = (n: number): Buffer => {
  const second = Math.floor(Date.now() / 1000)
  if (second !== cache.second) {
    const date = new Date(second * 1000).toUTCString()
    cache.second = second
    cache.answer = Buffer.from(
      `HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\nDate: ${date}\r\n\r\nhello world`,
      "latin1"
    )
    cache.answers = []
  }
  return (cache.answers[n] ??= Buffer.concat(Array.from({ length: n }, () => cache.answer)))
}

/** What the server does with each read of `stream`: answers its complete request heads in one write. */
export const reader = (stream: Peer) => {
  // Up to 3 bytes of a head end split across reads.
  let tail: Buffer | undefined
  return (chunk: Buffer): void => {
    const buf = tail === undefined ? chunk : Buffer.concat([tail, chunk])
    let n = 0
    let end = 0
    for (let k = buf.indexOf(HEAD_END); k >= 0; k = buf.indexOf(HEAD_END, end)) {
      n++
      end = k + 4
    }
    const keep = Math.max(end, buf.length - 3)
    tail = keep < buf.length ? Buffer.from(buf.subarray(keep)) : undefined
    if (n > 0) stream.write(answers(n))
  }
}

// Run as a script, not when imported (effect-fiber.ts reuses `reader`).
if (import.meta.main) {
  listen("raw-http", Number(process.argv[2] ?? 8083), (socket) => socket.on("data", reader(socket)))
}
