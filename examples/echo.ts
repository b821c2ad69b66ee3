/**
 * echo — asyncore's echo server (seed 001): every chunk read is sent back as it came, with no framing at all
 * (`Terminator.none`: asyncore's `handle_read` that `recv`s and `send`s). Half-open like the seed: the client's
 * FIN ends the input, what was echoed is flushed, then the server closes its side.
 *
 * Try it: npm start -- echo --port 7000, then: nc 127.0.0.1 7000 (or: printf 'hi' | nc -N 127.0.0.1 7000)
 */
import { Chat, Protocol, Terminator } from "effect-asynchat"
import { Command } from "effect/cli"
import * as Shared from "./shared.ts"

/** Each chunk back as received: no terminator, so nothing waits for a line end. */
export const Echo = Protocol.forEach(Terminator.none, (chunk) => Chat.push(chunk.bytes))

/** Runs the echo server on `host:port`. */
export const run = (options: Shared.ServerFlags) =>
  Shared.serveTcp(Echo, {
    ...options,
    name: "echo",
    tryIt: (host, port) => [`nc ${host} ${port}`, `printf 'hello' | nc -N ${host} ${port}`],
    server: Shared.withLimits({}, options)
  })

/** `npm start -- echo [--host H] [--port N]` */
export const command = Command.make("echo", Shared.serverFlags(7000), run).pipe(
  Shared.withTelemetry,
  Command.withDescription("asyncore's echo server: every chunk back as received")
)
