/**
 * The design's own floor for `bench/servers.ts`: a raw server of this folder (the line echo, RESP or HTTP),
 * with what the design asks of every connection and nothing more: a fiber of its own that lives as long as the
 * connection and that every read resumes (the raw handler's work runs in it), and a `Scope` that owns the
 * socket (closing it destroys the socket). No framing, queues or timeouts in Effect: what a connection and a
 * read cost before a framework does anything.
 *
 * Run: node bench/peers/effect-fiber.ts lines|redis|http PORT
 */
import { Effect } from "effect"
import type { Buffer } from "node:buffer"
import type { Duplex } from "node:stream"
import { listen } from "./listen.ts"
import * as RawHttp from "./raw-http.ts"
import * as RawLineEcho from "./raw-line-echo.ts"
import * as RawRedis from "./raw-redis.ts"

/** The raw servers, by the name this script takes. */
export const readers = { lines: RawLineEcho.reader, redis: RawRedis.reader, http: RawHttp.reader } as const

/**
 * Serves `stream` (a socket, or any Duplex) with `reader`'s work done in the connection's fiber, one resume per
 * read; the fiber ends when the stream closes, and its scope destroys the stream.
 */
export const serve = (stream: Duplex, reader: (stream: Duplex) => (chunk: Buffer) => void): void => {
  const read = reader(stream)
  const held: Array<Buffer> = []
  let open = true
  let wake: ((effect: Effect.Effect<boolean>) => void) | undefined
  // What arrived since the fiber last waited; false once the stream closed.
  const handleHeld = Effect.sync(() => {
    for (let i = 0; i < held.length; i++) read(held[i])
    held.length = 0
    return open
  })
  const poke = () => {
    const resume = wake
    wake = undefined
    resume?.(handleHeld)
  }
  stream.on("data", (chunk: Buffer) => {
    held.push(chunk)
    poke()
  })
  stream.once("close", () => {
    open = false
    poke()
  })
  const nextRead = Effect.callback<boolean>((resume) => {
    if (held.length > 0 || !open) resume(handleHeld)
    else wake = resume
  })
  let reading = true
  const connection = Effect.scoped(Effect.andThen(
    Effect.addFinalizer(() => Effect.sync(() => stream.destroy())),
    Effect.whileLoop({
      while: () => reading,
      body: () => nextRead,
      step: (more) => {
        reading = more
      }
    })
  ))
  Effect.runFork(connection)
}

if (import.meta.main) {
  const [name, portArg] = process.argv.slice(2)
  if (!(name in readers)) {
    console.error(`usage: node bench/peers/effect-fiber.ts ${Object.keys(readers).join("|")} PORT`)
    process.exit(2)
  }
  const reader = readers[name as keyof typeof readers]
  listen(`effect-fiber (${name})`, Number(portArg ?? 7002), (socket) => serve(socket, reader))
}
