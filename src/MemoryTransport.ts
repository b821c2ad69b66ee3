/**
 * Test a protocol without a port: an in-memory transport that connects clients to a server's handler with
 * no socket at all, with the chunking and latency of your choice, on the Effect clock (so `TestClock`
 * drives timeouts and delays deterministically). Each connection is a pair of Node `Duplex` streams that
 * behave as a socket does, run by the very transport TCP connections run on: what a test exercises is what
 * ships.
 *
 * {@link layer} provides both ends: a `Listener` for `ChatServer` and a {@link MemoryTransport} whose
 * {@link connector} opens client connections to it. Bytes written on one side arrive on the other cut by
 * `chunking` (whole writes, fixed-size pieces, one byte at a time, or seeded random pieces), each piece
 * `delay` after it was written. Each direction holds at most `capacity` bytes in flight: a side that stops
 * reading stops the other's writer, as TCP's windows do, so backpressure can be tested too. Ending a side's
 * output is a half-close (FIN); closing a connection drops what the peer was still sending to it, and the
 * peer's writes fail from then on (ECONNRESET).
 *
 * @since 0.1.0
 */
import { Context, Duration, Effect, Layer } from "effect"
import type { Connector } from "./ChatClient.ts"
import * as ChatError from "./ChatError.ts"
import { duplexPair, splitOf } from "./internal/memory-duplex.ts"
import { fromStream, type Link, Listener } from "./Listener.ts"

/**
 * How written bytes are cut into the pieces the other side reads: `"whole"` (each write arrives as written),
 * a number (pieces of that size; 1 is one byte at a time), or `{ random: seed }` (pieces of 1 to `maxPiece`
 * bytes, reproducible from the seed).
 *
 * @example
 * ```ts
 * import type { MemoryTransport } from "effect-asynchat/testing"
 *
 * const trickle: MemoryTransport.Chunking = 1
 * const shuffled: MemoryTransport.Chunking = { random: 42, maxPiece: 9 }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Chunking = "whole" | number | { readonly random: number; readonly maxPiece?: number | undefined }

/**
 * Options of the in-memory transport.
 *
 * @example
 * ```ts
 * import type { MemoryTransport } from "effect-asynchat/testing"
 *
 * const slowLink: MemoryTransport.Options = { chunking: 1, delay: "10 millis", capacity: 1024 }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** Default `"whole"`. */
  readonly chunking?: Chunking | undefined
  /** Latency of every piece (default none). */
  readonly delay?: Duration.Input | undefined
  /** Bytes in flight per direction before a writer waits (default 64 KiB). */
  readonly capacity?: number | undefined
}

/**
 * The client side of the in-memory transport.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChatClient, Terminator } from "effect-asynchat"
 * import { MemoryTransport } from "effect-asynchat/testing"
 *
 * const client = Effect.flatMap(MemoryTransport.connector, (connector) =>
 *   ChatClient.connect(connector, { terminator: Terminator.lf }))
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class MemoryTransport extends Context.Service<MemoryTransport, {
  readonly connector: Connector
  /** Connections opened so far. */
  readonly opened: Effect.Effect<number>
}>()("effect-asynchat/MemoryTransport") {}

/**
 * The connector of the `MemoryTransport` in context.
 *
 * @example
 * ```ts
 * import { Effect, Stream } from "effect"
 * import { ChatClient, Terminator } from "effect-asynchat"
 * import { MemoryTransport } from "effect-asynchat/testing"
 *
 * const roundTrip = Effect.scoped(Effect.gen(function*() {
 *   const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
 *   yield* client.chat.push("ping\n")
 *   return yield* Stream.runHead(client.input)
 * }))
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const connector: Effect.Effect<Connector, never, MemoryTransport> = Effect.map(
  MemoryTransport,
  (transport) => transport.connector
)

/**
 * Both ends of the in-memory transport: a `Listener` for the server and a {@link MemoryTransport} for clients.
 *
 * @example
 * ```ts
 * import { Layer } from "effect"
 * import { Chat, ChatServer, Protocol, Terminator } from "effect-asynchat"
 * import { MemoryTransport } from "effect-asynchat/testing"
 *
 * const Echo = Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes, "\n"))
 * const TestServer = ChatServer.layer(Echo).pipe(Layer.provideMerge(MemoryTransport.layer({ chunking: 1 })))
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options = {}): Layer.Layer<Listener | MemoryTransport> =>
  Layer.effectContext(Effect.contextWith((context: Context.Context<never>) => {
    const split = splitOf(options.chunking ?? "whole")
    const delayMillis = Duration.toMillis(Duration.fromInputUnsafe(options.delay ?? 0))
    const capacity = options.capacity ?? 64 * 1024
    const serverAddress = { _tag: "Memory", name: "server" } as const
    let accept: ((link: Link) => void) | undefined = undefined
    let stopped = false
    let opened = 0

    const listener = Listener.of({
      address: serverAddress,
      accept: (onConnection) =>
        Effect.callback<never>(() => {
          accept = onConnection
          return Effect.sync(() => {
            if (accept === onConnection) accept = undefined
          })
        }),
      stopAccepting: Effect.sync(() => {
        stopped = true
      })
    })

    const open = Effect.suspend(() => {
      if (accept === undefined || stopped) {
        return Effect.fail(
          new ChatError.ChatError({
            reason: new ChatError.ConnectFailed({
              target: "memory:server",
              cause: new Error("no server is accepting")
            })
          })
        )
      }
      // delays on the layer's clock: a test's TestClock when it provides the layer
      const [serverEnd, clientEnd] = duplexPair({ split, delayMillis, capacity, context })
      const clientAddress = { _tag: "Memory", name: `client-${++opened}` } as const
      accept(fromStream(serverEnd, { localAddress: serverAddress, remoteAddress: clientAddress }))
      return Effect.succeed<Link>(
        fromStream(clientEnd, { localAddress: clientAddress, remoteAddress: serverAddress })
      )
    })

    return Effect.succeed(
      Context.make(Listener, listener).pipe(
        Context.add(MemoryTransport, {
          connector: { target: "memory:server", open },
          opened: Effect.sync(() => opened)
        })
      )
    )
  }))
