/**
 * One connection, on any transport: the one place its parts are built and wired. The transport (a Node stream)
 * delivers reads to the inbox, which hands them to the input pull (reads → cutter → frames or messages, with
 * idle and frame timeouts); the handler writes through the `Chat` handle to the outbox (the producer FIFO),
 * which writes to the transport; the lifecycle ties them to a handler. Each part is given the connection as the
 * narrow interface it needs (its `Owner`), and reaches the others through it. Both directions of the transport
 * belong to one connection scope, so a peer's half-close never takes the output with it, and nothing outlives
 * that scope.
 *
 * Memory. A server holds every open connection, most of them idle, so what one holds is multiplied by
 * thousands; test/memory.test.ts measures it against a raw `node:net` server and fails past its budget. What
 * keeps it small, and where:
 * - classes, not objects of closures: `OpenConnection`, `Handle`, `Outbox`, `Inbox`, `InputPull`,
 *   `NodeStreamTransport`, the cutters, which take their framer's frames by method (a closure per method costs
 *   more than a field);
 * - states are small integers (`Inbox`'s, `Outbox`'s phase and writer, `InputPull`'s phase), not booleans;
 * - what an idle connection does not use yet is made when it reads or writes: the output (`outbox`) and the
 *   cutter (below);
 * - what most connections never use is made on first use: the handle's functions, the outbox's writer, wake,
 *   outcome (`done`) and list of pushes waiting for room, the inbox's array of held reads, the transport's
 *   waits for room and for its finish; no frames ready is one shared empty array; the cutter (its framer and
 *   its array of frames) is made at the first read, unless its mode has something to do before (a machine, a
 *   count), and the pull is its sink;
 * - continuations a waiting connection keeps (the handler fiber's, made together by `handlerOf`; `releaseOf`,
 *   `startOf`, `endOf`) are made by module functions that capture only what they use;
 * - the handler's fiber is not a child of the connection's (a parent keeps a Set of its children): the
 *   connection's finalizer interrupts it;
 * - a server's connection fiber puts its scope in its own context for good (`runForked`), rather than under
 *   `Effect.scoped`, and what its frames keep is one closure over the server's `Runner`, the link and the id;
 * - the `Chat` service is added once to the connection's context, which the connection's fiber, its handler's
 *   fiber and its writer all run with (`fiber.setContext`), not through `Effect.provideService`, whose frame
 *   would stay on every waiting fiber's stack;
 * - a server keeps its connections' fibers in `Supervision.Fibers`, each adding itself and removing itself as
 *   its last step, not a `FiberSet`'s observer on every fiber;
 * - a span only when a tracer is installed (`Supervision.isTraced`); log annotations made once per connection
 *   by the server, in the context it forks the connection's fiber with;
 * - the Node stream's listeners are shared by all connections, finding their transport on the stream;
 * - the idle and frame timeouts are one shared watchdog's entries, not a timer per connection.
 */
import { Clock, Context, Deferred, Duration, Effect, Exit, Fiber, type Scheduler, Scope, type Stream } from "effect"
import type * as Socket from "effect/socket/Socket"
import type * as NodeStream from "node:stream"
import { AsyncChat } from "../AsyncChat.ts"
import { Chat, formatAddress, type StartTls, type TlsInfo } from "../Chat.ts"
import type * as ChatError from "../ChatError.ts"
import * as ChatMetrics from "../ChatMetrics.ts"
import type { Link } from "../Listener.ts"
import type * as Protocol from "../Protocol.ts"
import type * as Terminator from "../Terminator.ts"
import { Counters } from "./counters.ts"
import { Handle, type Info } from "./handle.ts"
import { Inbox } from "./inbox.ts"
import * as Input from "./input.ts"
import * as Lifecycle from "./lifecycle.ts"
import { Outbox } from "./outbox.ts"
import { type Impl, implOf, type Mode } from "./protocol.ts"
import { InputPull } from "./pull.ts"
import { isTimed, type Settings } from "./settings.ts"
import * as SocketDuplex from "./socket-duplex.ts"
import * as Supervision from "./supervision.ts"
import * as Tls from "./tls.ts"
import * as Transport from "./transport.ts"
import { Watchdog } from "./watchdog.ts"

export type { Info } from "./handle.ts"

/**
 * A live connection: its handle, its input, its output, and its outcome. One waiter of the outcome at a time
 * (the connection's fiber, or a hand-driven client's watcher): a field for its callback, not a Deferred's
 * waiter list and cancel step, on every connection.
 */
export interface Connection extends Lifecycle.Served {
  readonly outbox: Outbox
  /**
   * Its server began a graceful shutdown: the input ends once the frames already read are handed out (a
   * partial frame is not one), so the handler answers what it has and returns.
   */
  drain(): void
}

const transportGone = Transport.writeClosed()

/**
 * Where a connection is in its life: built, its finalizer not yet in place; open (counted in the metrics,
 * its timeouts and transport watched); its handler done, its output flushing as part of that. Small integers.
 */
const Phase = { Built: 0, Open: 1, HandlerDone: 2 } as const
type Phase = typeof Phase[keyof typeof Phase]

/**
 * A connection over a Node stream: builds its parts, each given this connection as its owner, the transport
 * last (it starts listening). A class rather than closures: a server holds one per open connection, and an
 * idle one should hold as little as it can.
 */
class OpenConnection implements Connection, Lifecycle.Served {
  readonly counters: Counters
  readonly inbox: Inbox
  readonly reader: InputPull
  readonly chat: Handle
  readonly transport: Transport.NodeStreamTransport
  private phase: Phase = Phase.Built
  private decided: Exit.Exit<void, unknown> | undefined = undefined
  private waiter: ((outcome: Effect.Effect<void, unknown>) => void) | undefined = undefined
  /** The connection's services and its handle's (`Chat`): what its fibers run with. */
  readonly context: Context.Context<never>
  private readonly registry: Registry | undefined
  /** `startTls` was asked for: once is all. */
  private upgraded = false
  /** The handler's fiber, once started: interrupted as the connection is released. */
  private handler: Fiber.Fiber<void, unknown> | undefined = undefined
  /** The output, made when first written to or read from (`outbox`): none yet means nothing queued. */
  private box: Outbox | undefined = undefined
  private readonly settings: Settings

  constructor(options: {
    readonly stream: NodeStream.Duplex
    readonly info: Info
    readonly settings: Settings
    readonly mode: Mode<unknown>
    readonly counters: Counters
    readonly context: Context.Context<never>
    readonly dispatcher: Scheduler.SchedulerDispatcher
    readonly watchdog: Watchdog | undefined
    readonly registry: Registry | undefined
  }) {
    const { dispatcher, mode, settings } = options
    this.counters = options.counters
    this.registry = options.registry
    this.settings = settings
    this.inbox = new Inbox(this, {
      watchdog: options.watchdog,
      dispatcher,
      idleMillis: settings.idleTimeout === undefined ? undefined : Duration.toMillis(settings.idleTimeout),
      frameMillis: settings.frameTimeout === undefined ? undefined : Duration.toMillis(settings.frameTimeout),
      idleError: settings.idleError,
      frameError: settings.frameError
    })
    this.chat = new Handle(this, options.info)
    // the handler's services on top of the connection's, once: the context of the connection's fiber, its
    // handler's fiber and its writer alike (an `AsyncChat.make` connection's handle is its `AsyncChat` too)
    const context = Context.add(options.context, Chat, this.chat)
    this.context = mode._tag === "Exact" ? Context.add(context, AsyncChat, this.chat) : context
    this.reader = new InputPull(this, mode, settings.maxFrameLength)
    this.transport = new Transport.NodeStreamTransport(options.stream, this.inbox, this, settings.writeTimeout)
  }

  /**
   * The output, made when first used: an idle connection that has neither read nor written holds none. A read
   * makes it (the output is held while the handler runs in the read's callback), as does anything the handler
   * or the server queues, the handler's end, an upgrade.
   */
  get outbox(): Outbox {
    return this.box ??= new Outbox(this, this.settings, this.context, this.counters.dispatcher)
  }

  /**
   * The input as a Stream over the connection's pull, made when asked for: the connection does not keep it
   * (`Protocol.forEach` keeps the pull alone).
   */
  get input(): Stream.Stream<unknown, unknown> {
    return Input.fromSource(this.reader)
  }

  /** Once its finalizer is in place: watches the timeouts and counts the connection as open. */
  start(stream: NodeStream.Duplex): void {
    this.phase = Phase.Open
    this.inbox.watch()
    ChatMetrics.connectionsOpen.updateUnsafe(1, this.context)
    ChatMetrics.connectionsTotal.updateUnsafe(1, this.context)
    // closed before its listeners were attached: no 'close' will come
    if (stream.closed) this.transportClosed()
  }

  /**
   * The finalizer: tells the registry, then stops the timeouts, the metrics, the output and the transport; what
   * is left to wait for is the output's writer, interrupted, and the handler's fiber, if the connection's fiber
   * was interrupted before it could (`verdictOf`).
   */
  release(): Effect.Effect<void> | undefined {
    this.registry?.closed(this)
    this.inbox.stop()
    this.counters.flush()
    if (this.phase !== Phase.Built) ChatMetrics.connectionsOpen.updateUnsafe(-1, this.context)
    const writer = this.box?.close()
    this.transport.close()
    const handler = this.running
    if (handler === undefined) return writer
    return writer === undefined ? Fiber.interrupt(handler) : Effect.andThen(Fiber.interrupt(handler), writer)
  }

  // The input pull's owner: its flush before it waits, and the output held around a read in the callback.

  flush(): Effect.Effect<void, ChatError.ChatError> | undefined {
    return this.box?.flush()
  }

  holdOutput(): void {
    this.outbox.hold()
  }

  releaseOutput(): void {
    this.box?.release()
  }

  /** The output ended (`closeWhenDone` reached, or a write failed): a verdict while the handler runs. */
  outputDone(exit: Exit.Exit<void, ChatError.ChatError>): void {
    if (this.phase !== Phase.HandlerDone) this.decide(exit)
  }

  handlerDone(): void {
    this.phase = Phase.HandlerDone
  }

  handlerStarted(fiber: Fiber.Fiber<void, unknown>): void {
    this.handler = fiber
  }

  /**
   * The transport closed under us: after `closeWhenDone` the end we asked for, else a failure. After
   * `endOutput`, the peer's end of input closes it: the handler reads that end (or the failure) and decides.
   */
  transportClosed(): void {
    const box = this.box
    if (box !== undefined && box.isHalfClosed && this.inbox.isOver) return
    this.decide(box !== undefined && box.isClosing ? Exit.void : Exit.fail(transportGone))
  }

  drain(): void {
    this.reader.drain()
  }

  decide(exit: Exit.Exit<void, unknown>): void {
    if (this.decided !== undefined) return
    this.decided = exit
    const waiter = this.waiter
    this.waiter = undefined
    // a waiter interrupted meanwhile ignores this
    waiter?.(this.verdictOf(exit))
  }

  get outcome(): Effect.Effect<void, unknown> {
    return Effect.callback<void, unknown>((resume) => {
      if (this.decided !== undefined) resume(this.verdictOf(this.decided))
      else this.waiter = resume
    })
  }

  /** The outcome, once a handler still running is stopped (`stopHandler`). */
  private verdictOf(exit: Exit.Exit<void, unknown>): Effect.Effect<void, unknown> {
    const handler = this.running
    return handler === undefined ? exit : Effect.andThen(this.stopHandler(handler), exit)
  }

  /**
   * Stops a handler still running when the outcome is decided, before the connection's scope closes, so that
   * its finalizers run while what it acquired in that scope is still there: its input ended and its output
   * closed (one in an uninterruptible region waits on them), interrupted, and waited for.
   */
  private stopHandler(handler: Fiber.Fiber<void, unknown>): Effect.Effect<void> {
    return Effect.suspend(() => {
      this.inbox.end()
      const writer = this.box?.close()
      handler.interruptUnsafe()
      const stopped = Effect.asVoid(Fiber.await(handler))
      return writer === undefined ? stopped : Effect.andThen(stopped, writer)
    })
  }

  /** The handler's fiber while it runs. */
  private get running(): Fiber.Fiber<void, unknown> | undefined {
    const handler = this.handler
    return handler === undefined || handler.pollUnsafe() !== undefined ? undefined : handler
  }

  // The handle's owner.

  close(): void {
    this.box?.discard()
    this.decide(Exit.void)
  }

  discardBuffers(): void {
    this.box?.discard()
    this.reader.discard()
  }

  get terminator(): Terminator.Terminator {
    return this.reader.terminator
  }

  set terminator(terminator: Terminator.Terminator) {
    this.reader.terminator = terminator
  }

  /**
   * STARTTLS. Now: the input not handed out yet is dropped, and the transport stops reading (what arrives from
   * now on is the handshake's). In order with the output, once what was queued before is written in plaintext:
   * the stream is taken over by TLS, and its handshake (bounded by the idle timeout) ends the upgrade.
   */
  startTls(options: StartTls): Effect.Effect<TlsInfo, ChatError.ChatError> {
    if (this.chat.tls !== undefined || this.upgraded) {
      return Effect.fail(Transport.handshakeFailed(new Error("the connection is already over TLS")))
    }
    // no handshake can follow: fail now rather than at the idle timeout
    if (this.inbox.isOver) return Effect.fail(Transport.handshakeFailed(new Error("the peer's input has ended")))
    if (this.box?.isClosing) return Effect.fail(Transport.handshakeFailed(new Error("the output is closing")))
    this.upgraded = true
    const dropped = this.reader.discardUnread()
    const held = this.inbox.discardHeld()
    const buffered = this.transport.suspendInput()
    const done = Deferred.makeUnsafe<TlsInfo, ChatError.ChatError>()
    this.outbox.step({ run: upgradeOf(this, options, done), dropped: () => Deferred.doneUnsafe(done, transportLost) })
    const upgrade = Deferred.await(done)
    return dropped || held || buffered
      ? Effect.andThen(Effect.logDebug("STARTTLS: discarded the plaintext that came after it"), upgrade)
      : upgrade
  }
}

const transportLost = Exit.fail(transportGone)

/**
 * An upgrade, run by the outbox's writer: the plaintext written, the stream taken over by TLS, the handshake
 * done (or failed, or over the idle timeout: the connection then closes with that error, its TLS socket
 * destroyed by the transport); `done` told either way.
 */
const upgradeOf = (
  connection: OpenConnection,
  options: StartTls,
  done: Deferred.Deferred<TlsInfo, ChatError.ChatError>
): Effect.Effect<void, ChatError.ChatError> => {
  const transport = connection.transport
  const inbox = connection.inbox
  const handshake = Effect.flatMap(
    transport.flushed,
    () => transport.upgrade((stream) => Tls.wrap(stream, options), (wrapped) => Tls.handshake(wrapped, options))
  )
  const bounded = inbox.idleMillis === Infinity ? handshake : Effect.timeoutOrElse(handshake, {
    duration: Duration.millis(inbox.idleMillis),
    orElse: () => Effect.fail(inbox.idleError())
  })
  return Effect.onExit(bounded, (exit) =>
    Effect.sync(() => {
      if (Exit.isSuccess(exit)) {
        connection.chat.tls = exit.value
        // the handshake's bytes are no input: the idle period starts now, not at the STARTTLS
        inbox.touch()
      }
      Deferred.doneUnsafe(done, Exit.isSuccess(exit) || !Exit.hasInterrupts(exit) ? exit : transportLost)
    })).pipe(Effect.asVoid)
}

/** Traffic counters reported in the current context, on the current fiber's scheduler. */
export const makeCounters: Effect.Effect<Counters> = Effect.withFiber((fiber) =>
  Effect.succeed(new Counters(fiber.context, fiber.currentDispatcher))
)

/**
 * The watchdog of `settings`' timeouts on the current clock, its fiber running in the current scope; undefined
 * when there are none to watch. A server makes one for all its connections.
 */
export const makeWatchdog = (settings: Settings): Effect.Effect<Watchdog | undefined, never, Scope.Scope> =>
  isTimed(settings)
    ? Effect.withFiber((fiber) => {
      const watchdog = new Watchdog(fiber.getRef(Clock.Clock))
      return Effect.as(Effect.forkScoped(watchdog.run), watchdog)
    })
    : Effect.succeed(undefined)

/**
 * The Node stream of a link, in the current scope: its own, or its effect `Socket`'s reader and writer acquired
 * (a failure to open becomes `openError`'s error) and adapted.
 */
export const streamOf = (
  link: Link,
  openError: (error: Socket.SocketError) => ChatError.ChatError
): Effect.Effect<NodeStream.Duplex, ChatError.ChatError, Scope.Scope> =>
  link._tag === "Stream" ? Effect.succeed(link.stream) : Effect.mapError(SocketDuplex.acquire(link.socket), openError)

/**
 * Opens a connection in the current scope, for a server and a client alike: takes over the link's stream (an
 * effect `Socket`'s opened first; a failure to open becomes `openError`'s error), builds the connection, starts
 * its timeouts, ends it with a write failure when the transport closes under it, and counts it in the metrics
 * while it is open. One finalizer undoes it all, having told the registry first.
 */
export const open = (options: {
  readonly link: Link
  readonly id: number
  readonly settings: Settings
  readonly mode: Mode<unknown>
  readonly openError: (error: Socket.SocketError) => ChatError.ChatError
  /** Shared by a server's connections; a connection of its own otherwise. */
  readonly counters?: Counters | undefined
  /** The server's, shared by its connections; a connection of its own otherwise. */
  readonly watchdog?: Watchdog | undefined
  readonly registry?: Registry | undefined
}): Effect.Effect<Connection, ChatError.ChatError, Scope.Scope> =>
  // uninterruptible but for the wait for a socket to open: what is attached is always released
  Effect.uninterruptibleMask((restore) => {
    const link = options.link
    if (link._tag === "Stream" && link.failure !== undefined) {
      link.stream.destroy()
      return Effect.fail(link.failure)
    }
    return link._tag === "Stream"
      ? build(options, link.stream)
      : Effect.flatMap(restore(streamOf(link, options.openError)), (stream) => build(options, stream))
  })

const build = (
  options: Omit<Parameters<typeof open>[0], "openError">,
  stream: NodeStream.Duplex
): Effect.Effect<Connection, never, Scope.Scope> =>
  Effect.withFiber((fiber) => {
    const { link, settings } = options
    const context = fiber.context as Context.Context<Scope.Scope>
    const scope = Context.getUnsafe(context, Scope.Scope)
    // a server's connections share its dispatcher: their output wakes run in one turn, on one timer
    const dispatcher = options.counters?.dispatcher ?? fiber.currentDispatcher
    let watchdog = options.watchdog
    let ownWatchdog: Effect.Effect<unknown> | undefined = undefined
    if (watchdog === undefined && isTimed(settings)) {
      watchdog = new Watchdog(fiber.getRef(Clock.Clock))
      ownWatchdog = Effect.forkIn(watchdog.run, scope)
    }
    const connection = new OpenConnection({
      stream,
      info: {
        id: options.id,
        localAddress: link.localAddress,
        remoteAddress: link.remoteAddress,
        tls: link._tag === "Stream" ? link.tls : undefined
      },
      settings,
      mode: options.mode,
      counters: options.counters ?? new Counters(context, dispatcher),
      context,
      dispatcher,
      watchdog,
      registry: options.registry
    })
    // the finalizer first, then what it undoes: nothing is left behind, whatever happens after
    const started = Effect.andThen(Scope.addFinalizerExit(scope, releaseOf(connection)), startOf(connection, stream))
    return ownWatchdog === undefined ? started : Effect.tap(started, ownWatchdog)
  })

// Made here, capturing only the connection: an open connection holds them. The finalizer releases the connection
// as the scope calls it, in the scope's order, rather than returning an effect that does (`Scope.addFinalizer`
// would keep that effect, and a closure returning it).
const releaseOf = (connection: OpenConnection) => (): Effect.Effect<void> => connection.release() ?? Effect.void
const startOf = (connection: OpenConnection, stream: NodeStream.Duplex) =>
  Effect.sync(() => {
    connection.start(stream)
    return connection
  })

/**
 * Told of a server's connections as they open and close: exactly one of `closed` and `notOpened` is told of each
 * connection it serves, so a count kept here is never behind what a peer sees.
 */
export interface Registry {
  opened(connection: Connection): void
  /** As it closes, before its transport does: a peer that sees the close sees the registry without it. */
  closed(connection: Connection): void
  /** Its transport failed to open (or it was interrupted first): nothing of it is left to close. */
  notOpened(): void
}

/**
 * After a connection's life: logs and counts, then leaves the server's set of fibers, as the fiber's last step.
 * Made once per `Runner`, capturing only what it uses.
 */
const endOf = (role: "server" | "client", settings: Settings, fibers: Supervision.Fibers | undefined) =>
  fibers === undefined
    ? (exit: Exit.Exit<unknown, unknown>) => Supervision.logEnd(exit, role, settings.routineLogLevel)
    : (exit: Exit.Exit<unknown, unknown>) =>
      Effect.ensuring(Supervision.logEnd(exit, role, settings.routineLogLevel), fibers.removeCurrent)

const notOpenedOf = (registry: Registry) => Effect.sync(() => registry.notOpened())

/**
 * What the connections of one server (or of one `ChatClient.run`) have in common, made once for all of them:
 * a connection's effect captures it and its link and id, no object of its own.
 */
export interface Runner<E, R> {
  readonly settings: Settings
  readonly protocol: Impl<E, R>
  readonly role: "server" | "client"
  /** Shared by a server's connections; a connection of its own otherwise. */
  readonly counters: Counters | undefined
  /** The server's, shared by its connections; a connection of its own otherwise. */
  readonly watchdog: Watchdog | undefined
  readonly registry: Registry | undefined
  /** A server's: the fibers of its connections (`runForked` adds its own and removes it as it ends). */
  readonly fibers: Supervision.Fibers | undefined
  /** Logs and counts how a connection ended (and removes its fiber from `fibers`). */
  readonly end: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
  /** Logs and counts how a connection ended, alone. */
  readonly logEnd: (exit: Exit.Exit<unknown, unknown>) => Effect.Effect<void>
}

export const runner = <E, R>(options: {
  readonly settings: Settings
  readonly protocol: Protocol.Protocol<E, R>
  readonly role: "server" | "client"
  readonly counters?: Counters | undefined
  readonly watchdog?: Watchdog | undefined
  readonly registry?: Registry | undefined
  readonly fibers?: Supervision.Fibers | undefined
}): Runner<E, R> => ({
  settings: options.settings,
  protocol: implOf(options.protocol),
  role: options.role,
  counters: options.counters,
  watchdog: options.watchdog,
  registry: options.registry,
  fibers: options.fibers,
  end: endOf(options.role, options.settings, options.fibers),
  logEnd: endOf(options.role, options.settings, undefined)
})

/** A connection's life in the scope in context: opened, told to the registry, its handler served. */
const lifeOf = <E, R>(
  runner: Runner<E, R>,
  link: Link,
  id: number
): Effect.Effect<void, E | ChatError.ChatError, R | Scope.Scope> => {
  const registry = runner.registry
  const opening = open({
    link,
    id,
    settings: runner.settings,
    mode: runner.protocol.mode,
    openError: Transport.openFailed,
    counters: runner.counters,
    watchdog: runner.watchdog,
    registry
  })
  return Effect.flatMap(
    registry === undefined ? opening : Effect.onError(opening, () => notOpenedOf(registry)),
    (connection) => {
      registry?.opened(connection)
      return Effect.andThen(Effect.logDebug("connection opened"), Lifecycle.serve(connection, runner.protocol))
    }
  )
}

/**
 * The whole life of one of a server's connections, as the effect of a fiber of its own (a server forks one per
 * connection, with the connection's id and peer in its log annotations): in its own scope, supervised. A typed
 * failure, a defect or a synchronous throw in the handler closes this connection only; it is logged with the
 * connection's id and peer and counted, and a typed failure goes no further.
 *
 * The fiber is the connection's own, so its scope goes into the fiber's context for good, and the frame that
 * closes it finds it there: `Effect.scoped` would keep the context before it, to restore, and a closure of its
 * own. Every frame that waits on this fiber keeps the effect it runs: what they keep is the one small closure
 * that opens the connection (it captures the runner, the link and the id).
 */
export const runForked = <E, R>(
  runner: Runner<E, R>,
  link: Link,
  id: number,
  peer: string
): Effect.Effect<void, E | ChatError.ChatError, R> =>
  Effect.withFiber((fiber) => {
    // in the server's set from its first step (interrupted now if the server is closing), out of it as its last
    const fibers = runner.fibers
    fibers?.add(fiber)
    fiber.setContext(Context.add(fiber.context, Scope.Scope, Scope.makeUnsafe()))
    const life = Effect.suspend(() => lifeOf(runner, link, id)) as Effect.Effect<void, E | ChatError.ChatError, R>
    if (!Supervision.isTraced(fiber)) {
      return Effect.catchCause(
        Effect.onExit(Effect.onExit(life, closeOwnScope), runner.end),
        Supervision.ignoreRecoverable
      )
    }
    // with a span, the fiber leaves the set once the span ended: a shutdown that waits for the set waits for the
    // spans, and an exporter closed after the server has them all
    const spanned = Supervision.span(
      Effect.catchCause(
        Effect.onExit(Effect.onExit(life, closeOwnScope), runner.logEnd),
        Supervision.ignoreRecoverable
      ),
      id,
      peer,
      runner.role
    )
    return fibers === undefined ? spanned : Effect.ensuring(spanned, fibers.removeCurrent)
  })

/**
 * Closes the scope `runForked` put in its fiber's context, with the connection's exit: a frame pushed after it
 * did, in that fiber, which nothing else gives another scope for good.
 */
const closeOwnScope = (exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> =>
  Scope.closeUnsafe(Context.getUnsafe(Fiber.getCurrent()!.context, Scope.Scope) as Scope.Closeable, exit) ??
    Effect.void

/**
 * The whole life of one connection in its own scope, in the caller's fiber (`ChatClient.run`): a typed failure,
 * a defect or a synchronous throw in the handler closes this connection only, and the caller gets it back.
 */
export const run = <E, R>(
  runner: Runner<E, R>,
  link: Link,
  id: number
): Effect.Effect<void, E | ChatError.ChatError, R> => {
  const peer = formatAddress(link.remoteAddress)
  return Effect.onExit(Effect.scoped(Effect.suspend(() => lifeOf(runner, link, id))), runner.end).pipe(
    Effect.annotateLogs({ connection: id, peer }),
    (self) =>
      Effect.withFiber((fiber) => Supervision.isTraced(fiber) ? Supervision.span(self, id, peer, runner.role) : self)
  )
}
