/**
 * A server: asyncore's dispatcher that accepts, plus a supervised fiber per connection running a `Protocol`.
 *
 * - Every connection runs in its own fiber and scope. A typed failure, a defect or a synchronous throw in the
 *   handler is logged with the connection's id and peer, counted in `ChatMetrics.errors`, and closes that
 *   connection only; the server and the other connections never see it. Routine endings (a reset, a timeout)
 *   are logged at `routineLogLevel` (Debug), the rest as warnings, defects as errors.
 * - Limits, each with a default: `maxConnections` (10,000: beyond it a connection is answered with
 *   `rejectMessage`, if any, and closed at once), `idleTimeout` (5 minutes without a byte while waiting for
 *   input), `frameTimeout` (30 seconds for a frame, from its first byte to its terminator: slowloris),
 *   `writeTimeout` (1 minute for a peer to take any of a waiting write), `maxFrameLength` (64 KiB), and output
 *   watermarks (64 KiB / 32 KiB).
 * - The live connections are visible, as asyncore's channel map is: count, look up, broadcast, close all.
 * - Graceful shutdown: closing the Layer stops accepting (new connections are refused), ends every connection's
 *   input after the frames already read (`endInputOnShutdown`), lets handlers answer them until
 *   `shutdownTimeout` (5 seconds), then interrupts what is left. No socket, timer or fiber survives it.
 *
 * @since 0.1.0
 */
import {
  Context,
  Deferred,
  Duration,
  Effect,
  Exit,
  Layer,
  type LogLevel,
  Metric,
  Option,
  References,
  type Scope
} from "effect"
import type { Address, ChatShape } from "./Chat.ts"
import { formatAddress } from "./Chat.ts"
import type { ChatError } from "./ChatError.ts"
import * as ChatMetrics from "./ChatMetrics.ts"
import type * as ConnectionOptions from "./ConnectionOptions.ts"
import * as Connection from "./internal/connection.ts"
import { Offered } from "./internal/outbox.ts"
import { settingsOf } from "./internal/settings.ts"
import * as Supervision from "./internal/supervision.ts"
import { closeSoon, openFailed } from "./internal/transport.ts"
import { type Link, Listener } from "./Listener.ts"
import type { Protocol } from "./Protocol.ts"

/**
 * Limits of a server's connections. Every field has a default; `Duration.infinity` turns a timeout off.
 *
 * @example
 * ```ts
 * import type { ChatServer } from "effect-asynchat"
 *
 * const smtpLike: ChatServer.Options = {
 *   maxFrameLength: 512,
 *   idleTimeout: "5 minutes",
 *   frameTimeout: "30 seconds",
 *   maxConnections: 1000,
 *   rejectMessage: "421 Too many connections\r\n"
 * }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options extends ConnectionOptions.ConnectionOptions {
  /** Connections served at once (default 10,000); beyond it a new connection gets `rejectMessage` and is closed. */
  readonly maxConnections?: number | undefined
  /** Written to a connection refused at `maxConnections` before it is closed (default: nothing). */
  readonly rejectMessage?: string | Uint8Array | undefined
  /** How long a graceful shutdown waits for open connections before interrupting them (default 5 seconds). */
  readonly shutdownTimeout?: Duration.Input | undefined
  /**
   * The level of the line logged when a connection ends for a routine reason: the peer reset or vanished
   * (`ReadFailed`, `WriteFailed`), went quiet (`IdleTimeout`), stalled mid-frame (`FrameTimeout`) or stopped
   * reading (`WriteTimeout`). Default `"Debug"`, as Netty logs a peer reset: a server on the internet sees them
   * all day. `"None"` logs nothing; every ending is counted in `ChatMetrics.errors` by reason whatever the
   * level. An over-long frame, a producer's or handler's failure is always a warning, a defect an error.
   */
  readonly routineLogLevel?: LogLevel.Severity | "None" | undefined
  /**
   * When a graceful shutdown begins, every connection's input ends once the frames already read from it are
   * handed out (default true): a handler answers what it has read, its input stream ends at a frame boundary
   * (never inside a frame), it returns, and its connection closes after its output drains. A busy pipelined
   * connection thus closes at its next request boundary instead of running until `shutdownTimeout`, and an
   * idle one at once. `false` leaves the input open until `shutdownTimeout`: a handler that must finish a
   * longer exchange first watches `ChatServer.draining` itself.
   */
  readonly endInputOnShutdown?: boolean | undefined
}

/**
 * What a running server offers: its address and its live connections.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChatServer } from "effect-asynchat"
 *
 * const announce = Effect.gen(function*() {
 *   const server = yield* ChatServer.ChatServer
 *   yield* server.broadcast(`* ${yield* server.count} people here\r\n`)
 * })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ChatServerShape {
  readonly address: Address
  /** Connections open now. */
  readonly count: Effect.Effect<number>
  /** The handles of the open connections, oldest first. */
  readonly connections: Effect.Effect<ReadonlyArray<ChatShape>>
  readonly get: (id: number) => Effect.Effect<Option.Option<ChatShape>>
  /**
   * Queues `data` on every open connection but `except`, without waiting for any of them (`Chat.offer`). A
   * recipient that already has `outputLimit` bytes of unread output is a slow consumer: it is closed, as Redis
   * closes a client over its output buffer limit, so one reader that stalls neither holds up the others nor
   * grows memory.
   */
  readonly broadcast: (
    data: Uint8Array | string,
    options?: { readonly except?: number | undefined }
  ) => Effect.Effect<void>
  /** Closes every open connection now (asyncore's `close_all`). */
  readonly closeAll: Effect.Effect<void>
  /**
   * Completes when a graceful shutdown begins: a handler that holds an idle connection open (a chat room, a
   * subscription) can race it to say goodbye and return, instead of waiting to be interrupted.
   */
  readonly draining: Effect.Effect<void>
  /**
   * Whether a graceful shutdown has begun: a protocol that announces its close in its answers asks it as it
   * answers (HTTP's `Connection: close`, SMTP's `421`).
   */
  readonly isDraining: Effect.Effect<boolean>
}

/**
 * The running server.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, ChatServer } from "effect-asynchat"
 *
 * const port = Effect.map(ChatServer.ChatServer, (server) => Chat.formatAddress(server.address))
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class ChatServer extends Context.Service<ChatServer, ChatServerShape>()("effect-asynchat/ChatServer") {}

/**
 * Serves `protocol` on the `Listener` in context, scoped: closing the scope shuts the server down gracefully.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, ChatServer, Listener, Protocol, Terminator } from "effect-asynchat"
 *
 * const Echo = Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes, "\n"))
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const server = yield* ChatServer.make(Echo)
 *   yield* Effect.log(`echo on ${Chat.formatAddress(server.address)}`)
 *   return yield* Effect.never
 * })).pipe(Effect.provide(Listener.layerTcp({ host: "127.0.0.1", port: 0 })))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: <E, R>(
  protocol: Protocol<E, R>,
  options?: Options
) => Effect.Effect<ChatServerShape, never, Listener | Scope.Scope | Exclude<R, ChatServer>> = Effect.fnUntraced(
  function*<
    E,
    R
  >(protocol: Protocol<E, R>, options: Options = {}) {
    const listener = yield* Listener
    const settings = settingsOf(options)
    const maxConnections = options.maxConnections ?? 10_000
    const shutdownTimeout = Duration.fromInputUnsafe(options.shutdownTimeout ?? "5 seconds")
    const where = formatAddress(listener.address)
    const live = new Map<number, Connection.Connection>()
    let active = 0
    let nextId = 0

    const counters = yield* Connection.makeCounters
    const watchdog = yield* Connection.makeWatchdog(settings)
    const fibers = yield* Supervision.Fibers.make

    const draining = Deferred.makeUnsafe<void>()
    // Runs before the set interrupts what is left: refuse new connections, give open ones time to finish.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        yield* listener.stopAccepting
        Deferred.doneUnsafe(draining, Exit.void)
        if (endInput) { for (const connection of live.values()) connection.drain() }
        if (active === 0 || Duration.isZero(shutdownTimeout)) return
        yield* Effect.logInfo(
          `shutting down: waiting up to ${Duration.format(shutdownTimeout)} for ${active} connection${
            active === 1 ? "" : "s"
          }`
        )
        yield* fibers.awaitEmpty.pipe(Effect.timeoutOption(shutdownTimeout))
        if (active > 0) yield* Effect.logInfo(`shutting down: interrupting ${active} connections`)
      }).pipe(Effect.annotateLogs({ server: where }))
    )

    const reject = (accepted: Link) =>
      Effect.scoped(Effect.flatMap(Connection.streamOf(accepted, openFailed), (stream) =>
        Effect.sync(() => {
          if (options.rejectMessage !== undefined) stream.write(options.rejectMessage)
          closeSoon(stream)
        }))).pipe(
          Effect.ignore,
          Effect.andThen(Metric.update(ChatMetrics.connectionsRejected, 1)),
          Effect.andThen(Effect.logWarning(`refused: ${maxConnections} connections already open`))
        )

    const onConnection = (accepted: Link) => {
      const peer = formatAddress(accepted.remoteAddress)
      if (active >= maxConnections) {
        fork(fibers.tracked(reject(accepted)), { peer })
        return
      }
      active++
      const id = ++nextId
      fork(
        Connection.runForked(runner, accepted, id, peer) as Effect.Effect<
          void,
          E | ChatError,
          Exclude<R, ChatServer> | ChatServer
        >,
        { connection: id, peer }
      )
    }
    const endInput = options.endInputOnShutdown ?? true
    const registry: Connection.Registry = {
      opened: (connection) => {
        live.set(connection.chat.id, connection)
        if (endInput && Deferred.isDoneUnsafe(draining)) connection.drain()
      },
      // the slot is free as the connection closes, so `count` and `maxConnections` agree at every moment
      closed: (connection) => {
        live.delete(connection.chat.id)
        active--
      },
      notOpened: () => {
        active--
      }
    }
    const runner = Connection.runner({ settings, protocol, role: "server", counters, watchdog, registry, fibers })
    const liveConnections = Effect.sync(() => Array.from(live.values()))
    const all = Effect.map(liveConnections, (connections) => connections.map((connection) => connection.chat))
    const self: ChatServerShape = {
      address: listener.address,
      count: Effect.sync(() => live.size),
      connections: all,
      get: (id) => Effect.sync(() => Option.fromUndefinedOr(live.get(id)?.chat)),
      broadcast: (data, broadcastOptions) =>
        Effect.flatMap(
          liveConnections,
          (connections) =>
            Effect.forEach(connections, (connection) => {
              const chat = connection.chat
              // a connection that is ending (after closeWhenDone, say) drops it, and keeps what it queued before
              if (chat.id === broadcastOptions?.except || connection.outbox.offer([data]) !== Offered.Full) {
                return Effect.void
              }
              return Effect.andThen(
                chat.close,
                Effect.logWarning("closed a slow consumer: its output queue is full").pipe(
                  Effect.annotateLogs({ connection: chat.id, peer: formatAddress(chat.remoteAddress) })
                )
              )
            }, { discard: true })
        ),
      closeAll: Effect.flatMap(all, (chats) => Effect.forEach(chats, (chat) => chat.close, { discard: true })),
      draining: Deferred.await(draining),
      isDraining: Effect.sync(() => Deferred.isDoneUnsafe(draining))
    }
    // Connections run with the server in their context (handlers may use it: a chat room broadcasts), and with
    // the server's address, their id and their peer in their log annotations: the context is made once per
    // connection here, rather than by an annotating wrapper that every connection's fiber would keep.
    const context = yield* Effect.context<Exclude<R, ChatServer> | ChatServer>().pipe(
      Effect.provideService(ChatServer, self)
    )
    const serverAnnotations = { ...Context.get(context, References.CurrentLogAnnotations), server: where }
    const fork = (
      effect: Effect.Effect<void, unknown, Exclude<R, ChatServer> | ChatServer>,
      annotations: Record<string, unknown>
    ) => {
      const annotated = Context.add(context, References.CurrentLogAnnotations, { ...serverAnnotations, ...annotations })
      Effect.runForkWith(annotated)(effect)
    }
    // Started at once, so the listener has its callback before `make` returns; after `self` and `fork` exist,
    // because a listener may hand over connections that were waiting for it from inside `accept`.
    yield* Effect.forkScoped(listener.accept(onConnection), { startImmediately: true })
    yield* Effect.logDebug("listening").pipe(Effect.annotateLogs({ server: where }))
    return ChatServer.of(self)
  }
)

/**
 * Serves `protocol` as a Layer over the `Listener` it is given.
 *
 * @example
 * ```ts
 * import { NodeRuntime } from "@effect/platform-node"
 * import { Layer } from "effect"
 * import { Chat, ChatServer, Listener, Protocol, Terminator } from "effect-asynchat"
 *
 * const Echo = Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes, "\n"))
 * ChatServer.layer(Echo).pipe(
 *   Layer.provide(Listener.layerTcp({ host: "127.0.0.1", port: 7000 })),
 *   Layer.launch,
 *   NodeRuntime.runMain
 * )
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = <E, R>(
  protocol: Protocol<E, R>,
  options?: Options
): Layer.Layer<ChatServer, never, Listener | Exclude<R, ChatServer>> =>
  Layer.effect(ChatServer, make(protocol, options))
