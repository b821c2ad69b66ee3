/**
 * The floor for the line-echo and memory sections of `bench/servers.ts`: a raw `node:net` server with a
 * hand-written `\n` splitter (views within a chunk, a copy of a line split across reads) that echoes every
 * complete line, all the lines of one incoming chunk in one write.
 *
 * Run: node bench/peers/raw-line-echo.ts PORT
 */
import { Buffer } from "node:buffer"
import { listen, type Peer } from "./listen.ts"

const NL = Buffer.from("\n")
const MAX_LINE = 1024

/**
 * What the server does with each read of `stream`: echoes its complete lines in one write; destroys the stream
 * on a line over MAX_LINE bytes.
 */
export const reader = (stream: Peer) => {
  let partial: Buffer | undefined
  return (chunk: Buffer): void => {
    const out: Array<Buffer> = []
    let pos = 0
    for (let k = chunk.indexOf(10); k >= 0; k = chunk.indexOf(10, pos)) {
      if (partial !== undefined) {
        out.push(Buffer.concat([partial, chunk.subarray(0, k)]), NL)
        partial = undefined
      } else out.push(chunk.subarray(pos, k), NL)
      pos = k + 1
    }
    if (pos < chunk.length) {
      partial = partial === undefined ? Buffer.from(chunk.subarray(pos)) : Buffer.concat([partial, chunk])
      if (partial.length > MAX_LINE) stream.destroy()
    }
    if (out.length > 0) stream.write(Buffer.concat(out))
  }
}

// Run as a script, not when imported (effect-fiber.ts reuses `reader`).
if (import.meta.main) {
  listen("raw-line-echo", Number(process.argv[2] ?? 7001), (socket) => socket.on("data", reader(socket)))
}
