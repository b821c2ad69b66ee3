/**
 * One connection, on any transport: the input pull (transport reads → framer → frames or messages, with idle
 * and frame timeouts), the output (the producer FIFO), the `Chat` handle, and the lifecycle that ties them to
 * a handler. Both directions of the transport belong to one connection scope, so a peer's half-close never
 * takes the output with it, and nothing outlives that scope.
 *
 * Memory. A server holds every open connection, most of them idle, so what one holds is multiplied by
 * thousands; test/memory.test.ts measures it against a raw `node:net` server and fails past its budget. What
 * keeps it small, and where:
 * - classes, not objects of closures: `OpenConnection`, `Handle`, `Outbox`, `Inbox`, `NodeStreamTransport`,
 *   the cutters, `Listener`'s stream link (a closure per method costs more than a field);
 * - what most connections never use is made on first use: the handle's functions, the outbox's writer and
 *   wake, the transport's waits for room and for its finish;
 * - continuations a waiting connection keeps (`flushOf`, `afterHandler`, `releaseOf`, `startOf`, `endOf`)
 *   are made by module functions that capture only what they use;
 * - the `Chat` service goes into the handler fiber's own context (`fiber.setContext`), not through
 *   `Effect.provideService`, whose frame would stay on every waiting fiber's stack;
 * - a span only when a tracer is installed (`Supervision.spanned`); log annotations made once per connection
 *   by the server (`annotatedPeer`);
 * - the Node stream's listeners are shared by all connections, finding their transport on the stream;
 * - the idle and frame timeouts are one shared watchdog's entries, not a timer per connection.
 */
import { Cause, Clock, Context, Deferred, Duration, Effect, Exit, type Scheduler, Scope, Stream } from "effect"
import type * as Socket from "effect/socket/Socket"
import { Buffer } from "node:buffer"
import { AsyncChat, type AsyncChatShape } from "../AsyncChat.ts"
import { type Address, Chat, type ChatShape, formatAddress } from "../Chat.ts"
import * as ChatError from "../ChatError.ts"
import * as ChatMetrics from "../ChatMetrics.ts"
import type { Link } from "../Listener.ts"
import type * as Protocol from "../Protocol.ts"
import type * as Terminator from "../Terminator.ts"
import { Counters } from "./counters.ts"
import * as Cutters from "./cutters.ts"
import { reasonOf } from "./failure.ts"
import type { Failure } from "./framer.ts"
import { Inbox } from "./inbox.ts"
import * as Input from "./input.ts"
import { Offered, Outbox } from "./outbox.ts"
import { type Impl, implOf, type Mode } from "./protocol.ts"
import { isTimed, type Settings } from "./settings.ts"
import * as Supervision from "./supervision.ts"
import * as Transport from "./transport.ts"
import { Watchdog } from "./watchdog.ts"

/** Who a connection is. */
export interface Info {
  readonly id: number
  readonly localAddress: Address
  readonly remoteAddress: Address
}

/** A live connection: its handle, its input, and its output. */
export interface Connection {
  readonly chat: ChatShape
  readonly input: Stream.Stream<unknown, unknown>
  readonly outbox: Outbox
  /**
   * Waits for the connection's outcome, decided once by whichever comes first: the handler's end (after its
   * output is flushed), the output's end (`closeWhenDone` reached, or a write failed), `chat.close`, or the
   * transport closing under us. One waiter at a time (the connection's fiber, or a hand-driven client's
   * watcher): a field for its callback, not a Deferred's waiter list and cancel step, on every connection.
   */
  readonly outcome: Effect.Effect<void, unknown>
  /** Decides the outcome, unless it was decided already. */
  decide(exit: Exit.Exit<void, unknown>): void
  /** Set once the handler is done: the output ending is then part of its flush, not a verdict of its own. */
  handlerDone: boolean
  /**
   * Its server began a graceful shutdown: the input ends once the frames already read are handed out (a
   * partial frame is not one), so the handler answers what it has and returns.
   */
  drain(): void
}

const chatError = (reason: ChatError.Reason) => new ChatError.ChatError({ reason })

const fromFailure = (failure: Failure): ChatError.ChatError => chatError(reasonOf(failure))

const transportGone = Transport.writeClosed()

/** The connection's pull, as `Protocol.forEach` drives it: one frame, message or batch at a time (see `ready`). */
type Next = Input.One<unknown, unknown>

/**
 * A connection over its transport, which delivers input to `inbox`; its traffic goes to `counters`. A class
 * rather than closures: a server holds one per open connection, and an idle one should hold as little as it can.
 */
class OpenConnection implements Connection {
  readonly chat: ChatShape
  readonly outbox: Outbox
  handlerDone = false
  private decided: Exit.Exit<void, unknown> | undefined = undefined
  private waiter: ((outcome: Effect.Effect<void, unknown>) => void) | undefined = undefined
  private readonly inbox: Inbox
  private readonly counters: Counters
  private readonly context: Context.Context<never>
  private readonly registry: Registry | undefined
  private readonly ownStream: Transport.NodeStreamTransport | undefined
  private started = false
  /** Stops watching a transport that is not our own Node stream (which tells `transportClosed` itself). */
  private stopWatching: (() => void) | undefined = undefined
  // Input: everything the framer produces during one pull goes to `sink.out`, handed downstream as one batch.
  private readonly sink: Cutters.Sink<unknown, unknown> = { out: [], error: undefined }
  private readonly cutter: Cutters.Cutter
  private readonly batched: boolean
  private failure: unknown = undefined
  // A machine that throws is a bug: its defect ends the connection, after the messages cut before it.
  private defect: { readonly thrown: unknown } | undefined = undefined
  private inputEnded = false
  private drained = false
  // Frames are handed out one per pull, not in batches: a consumer that stops early (`Stream.runHead`,
  // `Stream.take`) leaves the rest here for its next read instead of dropping them with the batch.
  private ready: Array<unknown> = []
  private readyAt = 0
  private completedAtWait = 0
  private readonly pull: Next = Effect.suspend(() => this.step())

  constructor(options: {
    readonly inbox: Inbox
    readonly transport: Transport.Transport
    readonly info: Info
    readonly settings: Settings
    readonly mode: Mode<unknown>
    readonly counters: Counters
    readonly context: Context.Context<never>
    readonly dispatcher: Scheduler.SchedulerDispatcher
    readonly registry: Registry | undefined
    /** The transport, when it is a Node stream we drive ourselves (closed with the connection). */
    readonly ownStream: Transport.NodeStreamTransport | undefined
  }) {
    const { inbox, mode, settings } = options
    this.inbox = inbox
    this.counters = options.counters
    this.context = options.context
    this.registry = options.registry
    this.ownStream = options.ownStream
    this.outbox = new Outbox({
      limits: settings,
      transport: options.transport,
      counters: options.counters,
      context: options.context,
      dispatcher: options.dispatcher,
      owner: this
    })
    this.cutter = mode._tag === "Machine"
      ? Cutters.machine(mode.machine, settings.maxFrameLength, this.sink)
      : mode._tag === "Exact"
      ? Cutters.exact(mode.terminator, settings.maxFrameLength, this.sink as Cutters.Sink<any, never>)
      : Cutters.fixed(mode.terminator, settings.maxFrameLength, this.sink as Cutters.Sink<any, never>)
    this.batched = mode._tag !== "Exact" && mode.batched === true
    // a read is cut in the step that hands it over: `inbox.next` resumes with what `onRead` makes of it
    inbox.reader = this
    // A machine whose first terminator is invalid (or throws) fails the first pull, after what it emitted: the
    // connection opens, and its handler sees why it closes.
    try {
      this.record(this.cutter.start())
    } catch (value) {
      this.thrown(value)
    }
    this.chat = new Handle(this, options.info)
  }

  /**
   * The input as a Stream over the connection's pull, made when asked for: the connection does not keep it
   * (`Protocol.forEach` keeps the pull alone).
   */
  get input(): Stream.Stream<unknown, unknown> {
    return Input.fromPull(this.pull)
  }

  /**
   * Once its finalizer is in place: watches the timeouts and the transport closing under us, and counts the
   * connection as open.
   */
  start(link: Link): void {
    this.started = true
    this.inbox.watch()
    ChatMetrics.connectionsOpen.updateUnsafe(1, this.context)
    ChatMetrics.connectionsTotal.updateUnsafe(1, this.context)
    // our own Node stream tells the connection when it closes; any other transport is watched through its link
    if (this.ownStream !== undefined) {
      this.ownStream.owner = this
      if (link.stream?.closed === true) this.transportClosed()
    } else {
      this.stopWatching = link.onClosed(transportClosedOf(this))
    }
  }

  /** The finalizer: tells the registry, then stops the timeouts, the metrics, the output and the transport. */
  release(): void {
    this.registry?.closed(this)
    this.stopWatching?.()
    this.inbox.stop()
    this.counters.flush()
    if (this.started) ChatMetrics.connectionsOpen.updateUnsafe(-1, this.context)
    this.outbox.close()
    this.ownStream?.close()
  }

  /** The output ended (`closeWhenDone` reached, or a write failed): a verdict while the handler runs. */
  outputDone(exit: Exit.Exit<void, ChatError.ChatError>): void {
    if (!this.handlerDone) this.decide(exit)
  }

  /**
   * The transport closed under us: after `closeWhenDone` the end we asked for, else a failure. After
   * `endOutput`, the peer's end of input closes it: the handler reads that end (or the failure) and decides.
   */
  transportClosed(): void {
    if (this.outbox.isHalfClosed && this.inbox.isOver) return
    this.decide(this.outbox.isClosing ? Exit.void : Exit.fail(transportGone))
  }

  private record(result: Failure | undefined): boolean {
    if (result !== undefined) this.failure = fromFailure(result)
    else if (this.sink.error !== undefined) this.failure = this.sink.error
    else return true
    return false
  }

  private thrown(value: unknown): void {
    this.defect = { thrown: value }
    this.failure = this.defect
  }

  private feed(chunk: Uint8Array): void {
    try {
      this.record(this.cutter.push(chunk))
    } catch (value) {
      this.thrown(value)
    }
  }

  private end(): void {
    try {
      this.record(this.cutter.end())
    } catch (value) {
      this.thrown(value)
    }
  }

  private flush(): Next {
    const sink = this.sink
    if (this.batched) {
      if (sink.out.length === 0) return this.pull
      const batch = sink.out
      sink.out = []
      this.counters.frames(batch.length)
      return Effect.succeed([batch])
    }
    if (this.readyAt === this.ready.length) {
      if (sink.out.length === 0) return this.pull
      this.ready = sink.out
      this.readyAt = 0
      sink.out = []
      this.counters.frames(this.ready.length)
    }
    return Effect.succeed([this.ready[this.readyAt++]])
  }

  holdOutput(): void {
    this.outbox.hold()
  }

  releaseOutput(): void {
    this.outbox.release()
  }

  /** What the inbox resumes the reader with: the reads (undefined: the end of input) cut into frames. */
  onRead(chunks: ReadonlyArray<Uint8Array> | undefined): Next {
    const framer = this.cutter.framer
    if (chunks === undefined) {
      this.inputEnded = true
      if (framer.rest === undefined) this.end()
      return this.flush()
    }
    let size = 0
    for (let i = 0; i < chunks.length; i++) {
      if (this.failure !== undefined) break
      const chunk = chunks[i]
      size += chunk.length
      if (framer.rest !== undefined) framer.rest = Buffer.concat([framer.rest, chunk])
      else this.feed(chunk)
    }
    this.counters.read(size)
    return this.flush()
  }

  private step(): Next {
    if (this.readyAt < this.ready.length || this.sink.out.length > 0) return this.flush()
    const failure = this.failure
    if (failure !== undefined) return this.defect !== undefined ? Effect.die(this.defect.thrown) : Effect.fail(failure)
    const framer = this.cutter.framer
    const rest = framer.rest
    if (rest !== undefined) {
      framer.rest = undefined
      this.feed(rest)
      if (this.inputEnded && framer.rest === undefined && this.failure === undefined) this.end()
      return this.flush()
    }
    if (this.inputEnded || this.drained) return Cause.done()
    // every frame of the last read is consumed: what the handler queued goes out now, before we wait
    const flushed = this.outbox.flushInline()
    // the frame timeout watches the partial frame left now (a discarded one is none), from the read that began it
    this.inbox.frameInProgress(framer.buffered > 0, framer.completed !== this.completedAtWait)
    this.completedAtWait = framer.completed
    const next = this.inbox.next as Next
    return flushed === undefined ? next : Effect.andThen(flushed, next)
  }

  drain(): void {
    if (this.drained) return
    this.drained = true
    // a handler waiting for input gets its end now: `step` says so, as nothing complete is left
    this.inbox.wake(this.pull)
  }

  decide(exit: Exit.Exit<void, unknown>): void {
    if (this.decided !== undefined) return
    this.decided = exit
    const waiter = this.waiter
    this.waiter = undefined
    // a waiter interrupted meanwhile ignores this
    waiter?.(exit)
  }

  get outcome(): Effect.Effect<void, unknown> {
    return Effect.callback<void, unknown>((resume) => {
      if (this.decided !== undefined) resume(this.decided)
      else this.waiter = resume
    })
  }

  /** `chat.close`: drops what is queued and ends the connection now. */
  close(): void {
    this.outbox.discard()
    this.decide(Exit.void)
  }

  /** `chat.discardBuffers`: drops queued output and the input of the frame in progress. */
  discardBuffers(): void {
    const framer = this.cutter.framer
    this.outbox.discard()
    framer.discard()
    if (framer.rest !== undefined) framer.rest = new Uint8Array(0)
  }

  get terminator(): Terminator.Terminator {
    return this.cutter.framer.terminator
  }

  set terminator(terminator: Terminator.Terminator) {
    this.cutter.framer.terminator = terminator
  }
}

/**
 * The `Chat` handle of a connection, and its `AsyncChat` handle when `AsyncChat.make` frames it. Its functions
 * are made when first asked for, so a connection that never uses one does not hold it; each is an effect, so
 * each run pushes: `Effect.repeat(chat.push(ping))` pings every time, and one never run sends nothing.
 */
class Handle implements ChatShape, AsyncChatShape {
  readonly id: number
  readonly localAddress: Address
  readonly remoteAddress: Address
  private readonly connection: OpenConnection
  private pushing: ChatShape["push"] | undefined = undefined

  constructor(connection: OpenConnection, info: Info) {
    this.connection = connection
    this.id = info.id
    this.localAddress = info.localAddress
    this.remoteAddress = info.remoteAddress
  }

  get push(): ChatShape["push"] {
    const outbox = this.connection.outbox
    return this.pushing ??= (...data) => Effect.suspend(() => outbox.push(data))
  }

  get offer(): ChatShape["offer"] {
    const outbox = this.connection.outbox
    return (...data) => Effect.sync(() => outbox.offer(data) === Offered.Queued)
  }

  get pushStream(): ChatShape["pushStream"] {
    const outbox = this.connection.outbox
    return (stream) => outbox.pushStream(stream)
  }

  get closeWhenDone(): ChatShape["closeWhenDone"] {
    const outbox = this.connection.outbox
    return Effect.sync(() => outbox.closeWhenDone())
  }

  get endOutput(): ChatShape["endOutput"] {
    const outbox = this.connection.outbox
    return Effect.sync(() => outbox.endOutput())
  }

  get close(): ChatShape["close"] {
    const connection = this.connection
    return Effect.sync(() => connection.close())
  }

  get discardBuffers(): AsyncChatShape["discardBuffers"] {
    const connection = this.connection
    return Effect.sync(() => connection.discardBuffers())
  }

  get terminator(): AsyncChatShape["terminator"] {
    const connection = this.connection
    return Effect.sync(() => connection.terminator)
  }

  get setTerminator(): AsyncChatShape["setTerminator"] {
    const connection = this.connection
    return (terminator) =>
      Effect.sync(() => {
        connection.terminator = terminator
      })
  }
}

/** How long output queued before a handler failed may take to reach the peer before the connection closes. */
const FLUSH_AFTER_FAILURE = Duration.seconds(5)

/**
 * Runs `handler` on a connection until it is over: the handler returned (then queued output is flushed), a
 * `closeWhenDone` was reached, `close` was called, or something failed. When the handler fails, what it had
 * queued (answers to earlier requests) is still flushed, for at most a few seconds, before the failure closes
 * the connection. The caller's scope closes the socket.
 *
 * The handler runs in a child fiber, not in this one: whatever it does (an uninterruptible region, a value
 * that is not an effect, which kills its fiber outright), this fiber ends the connection once the outcome is
 * decided, and its finalizers run.
 */
const serve = <E, R>(
  connection: Connection,
  protocol: Impl<E, R>
): Effect.Effect<void, E | ChatError.ChatError, R> => {
  const handled = Effect.andThen(
    Effect.onExit(
      Effect.withFiber((fiber) => {
        // The fiber is the handler's own: `Chat` goes into its context for good. `Effect.provideService` would
        // keep a frame on its stack to restore the context after, held by every waiting connection.
        const context = Context.add(fiber.context, Chat, connection.chat)
        // an `AsyncChat.make` connection's handler also gets its `AsyncChat` handle: the same object
        fiber.setContext(
          protocol.mode._tag === "Exact" ? Context.add(context, AsyncChat, connection.chat as Handle) : context
        )
        return protocol.handler(connection.input)
      }),
      afterHandler(connection)
    ),
    () => flushOf(connection)
  )
  // a child of this fiber: when the outcome is decided and this returns, it is interrupted
  return Effect.flatMap(Effect.forkChild(handled, { startImmediately: true }), (running) => {
    running.addObserver((exit) => connection.decide(exit))
    return connection.outcome
  }) as Effect.Effect<void, E | ChatError.ChatError, R>
}

// The handler's continuations are made here, capturing only the connection: a suspended connection holds them.

/** Ends the output after what is queued, and waits until the peer has taken it. */
const flushOf = (connection: Connection) =>
  Effect.andThen(connection.chat.closeWhenDone, Deferred.await(connection.outbox.done))

/** When the handler failed, what it had queued (answers to earlier requests) still goes out, for a while. */
const afterHandler = (connection: Connection) => (exit: Exit.Exit<unknown, unknown>): Effect.Effect<void> => {
  connection.handlerDone = true
  return Exit.isSuccess(exit) || Cause.hasInterruptsOnly(exit.cause)
    ? Effect.void
    : flushOf(connection).pipe(Effect.timeoutOption(FLUSH_AFTER_FAILURE), Effect.ignore, Effect.interruptible)
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
 * Opens a connection in the current scope, for a server and a client alike: takes over the link's transport
 * (its Node stream when it has one, else its socket's reader and writer; a failure to open becomes
 * `openError`'s error), builds the connection, starts its timeouts, ends it with a write failure when the
 * transport closes under it, and counts it in the metrics while it is open. One finalizer undoes it all, having
 * told the registry first.
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
  Effect.uninterruptibleMask((restore) =>
    Effect.withFiber((fiber) => {
      const { link, settings } = options
      const context = fiber.context as Context.Context<Scope.Scope>
      const scope = Context.getUnsafe(context, Scope.Scope)
      // a server's connections share its dispatcher: their output wakes run in one turn, on one timer
      const dispatcher = options.counters?.dispatcher ?? fiber.currentDispatcher
      const counters = options.counters ?? new Counters(context, dispatcher)
      let watchdog = options.watchdog
      let ownWatchdog: Effect.Effect<unknown> | undefined = undefined
      if (watchdog === undefined && isTimed(settings)) {
        watchdog = new Watchdog(fiber.getRef(Clock.Clock))
        ownWatchdog = Effect.forkIn(watchdog.run, scope)
      }
      const inbox = new Inbox({
        watchdog,
        dispatcher,
        idleMillis: settings.idleTimeout === undefined ? undefined : Duration.toMillis(settings.idleTimeout),
        frameMillis: settings.frameTimeout === undefined ? undefined : Duration.toMillis(settings.frameTimeout),
        idleError: settings.idleError,
        frameError: settings.frameError
      })
      const opened = (transport: Transport.Transport, ownStream: Transport.NodeStreamTransport | undefined) => {
        inbox.transport = transport
        const connection = new OpenConnection({
          inbox,
          transport,
          info: { id: options.id, localAddress: link.localAddress, remoteAddress: link.remoteAddress },
          settings,
          mode: options.mode,
          counters,
          context,
          dispatcher,
          registry: options.registry,
          ownStream
        })
        // the finalizer first, then what it undoes: nothing is left behind, whatever happens after
        const started = Effect.andThen(Scope.addFinalizer(scope, releaseOf(connection)), startOf(connection, link))
        return ownWatchdog === undefined ? started : Effect.tap(started, ownWatchdog)
      }
      if (link.stream === undefined) {
        return Effect.flatMap(
          restore(Transport.fromSocket(link.socket, inbox, options.openError, settings.writeTimeout)),
          (transport) => opened(transport, undefined)
        )
      }
      const transport = new Transport.NodeStreamTransport(link.stream, inbox, settings.writeTimeout)
      return opened(transport, transport)
    })
  )

// Made here, capturing only the connection: an open connection holds them.
const releaseOf = (connection: OpenConnection) => Effect.sync(() => connection.release())
const startOf = (connection: OpenConnection, link: Link) =>
  Effect.sync(() => {
    connection.start(link)
    return connection
  })
const transportClosedOf = (connection: OpenConnection) => () => connection.transportClosed()

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

const openError = (error: Socket.SocketError): ChatError.ChatError =>
  Transport.readFailed(Transport.socketErrorCause(error))

/** After a connection's life: logs and counts. Made here, capturing only what it uses. */
const endOf = (role: "server" | "client", settings: Settings) => (exit: Exit.Exit<unknown, unknown>) =>
  Supervision.logEnd(exit, role, settings.routineLogLevel)

const notOpenedOf = (registry: Registry) => Effect.sync(() => registry.notOpened())

/**
 * The whole life of one connection in its own scope, supervised: a typed failure, a defect or a synchronous
 * throw in the handler closes this connection only. On a server it is logged with the connection's id and
 * peer and counted; a client gets it back instead.
 */
export const run = <E, R>(options: {
  readonly link: Link
  readonly id: number
  readonly counters?: Counters | undefined
  readonly watchdog?: Watchdog | undefined
  readonly settings: Settings
  readonly protocol: Protocol.Protocol<E, R>
  readonly role: "server" | "client"
  readonly registry?: Registry | undefined
  /**
   * The peer as the caller formatted it, when it runs this with the connection's id and peer in its log
   * annotations already (a server does, in the context it forks the connection with).
   */
  readonly annotatedPeer?: string | undefined
}): Effect.Effect<void, E | ChatError.ChatError, R> => {
  const { id, registry, role } = options
  const protocol = implOf(options.protocol)
  const served = Effect.scoped(Effect.suspend(() => {
    const opening = open({
      link: options.link,
      id,
      settings: options.settings,
      mode: protocol.mode,
      openError,
      counters: options.counters,
      watchdog: options.watchdog,
      registry
    })
    return Effect.flatMap(
      registry === undefined ? opening : Effect.onError(opening, () => notOpenedOf(registry)),
      (connection) => {
        registry?.opened(connection)
        return Effect.andThen(Effect.logDebug("connection opened"), serve(connection, protocol))
      }
    )
  }))
  const peer = options.annotatedPeer ?? formatAddress(options.link.remoteAddress)
  return Effect.onExit(served, endOf(role, options.settings)).pipe(
    role === "server" ? (self) => Effect.catchCause(self, Supervision.ignoreRecoverable) : (self) => self,
    options.annotatedPeer !== undefined ? (self) => self : Effect.annotateLogs({ connection: id, peer }),
    (self) => Supervision.spanned(self, id, peer, role)
  )
}
