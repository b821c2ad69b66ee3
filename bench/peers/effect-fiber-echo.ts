/**
 * The design's own floor for the memory section of `bench/servers.ts`: the raw line echo of
 * `raw-line-echo.ts`, with what the design asks of every connection and nothing more: a fiber of its own that
 * lives as long as the connection, and a `Scope` that owns the socket (closing it destroys the socket). No
 * framing, queues or timeouts in Effect: what a connection costs before a framework does anything.
 *
 * Run: node bench/peers/effect-fiber-echo.ts PORT
 */
import { Effect } from "effect"
import { createServer, type Socket } from "node:net"
import { serve } from "./raw-line-echo.ts"

/** One fiber per connection, in a scope that destroys the socket; it ends when the socket closes. */
const connection = (socket: Socket) =>
  Effect.scoped(Effect.andThen(
    Effect.addFinalizer(() => Effect.sync(() => socket.destroy())),
    Effect.callback<void>((resume) => {
      serve(socket)
      socket.once("close", () => resume(Effect.void))
    })
  ))

const port = Number(process.argv[2] ?? 7002)
createServer((socket) => {
  socket.on("error", () => socket.destroy())
  Effect.runFork(connection(socket))
}).listen(
  { port, host: "127.0.0.1", backlog: 4096 },
  () => console.log(`effect-fiber-echo listening on 127.0.0.1:${port}`)
)
