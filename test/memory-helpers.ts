/**
 * What the tests over the in-memory transport share: an echo server's protocol, a hand-driven line client of the
 * server in context, and ways to read what it receives.
 */
import { Effect, Stream } from "effect"
import * as Chat from "../src/Chat.ts"
import * as ChatClient from "../src/ChatClient.ts"
import type * as Framing from "../src/Framing.ts"
import * as MemoryTransport from "../src/MemoryTransport.ts"
import * as Protocol from "../src/Protocol.ts"
import * as Terminator from "../src/Terminator.ts"
import { text } from "./helpers.ts"

/** Echoes every line. */
export const Echo = Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes, "\n"))

/** A hand-driven client of the in-memory server in context, cutting lines. */
export const connectLines = Effect.flatMap(
  MemoryTransport.connector,
  (connector) => ChatClient.connect(connector, { terminator: Terminator.lf, maxFrameLength: 1024 * 1024 })
)

/** Reads `n` lines as strings. */
export const readLines = (client: ChatClient.Client<Framing.Frame>, n: number) =>
  client.input.pipe(Stream.take(n), Stream.map((frame) => text(frame.bytes)), Stream.runCollect)

/** Reads everything until the server closes, as one string. */
export const readAll = (client: ChatClient.Client<Framing.Frame>) =>
  client.input.pipe(
    Stream.map((frame) => text(frame.bytes) + (frame.terminated ? "\n" : "")),
    Stream.runCollect,
    Effect.map((parts) => parts.join(""))
  )

export const memory = (options?: MemoryTransport.Options) => MemoryTransport.layer(options)

/** Lets every fiber that can run, run (a closed connection's fiber finishing, say), without the clock. */
export const settle = Effect.forEach(Array.from({ length: 100 }), () => Effect.yieldNow, { discard: true })
