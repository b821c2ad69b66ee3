/**
 * The byte pipe under a connection, in the shape the connection drives it: input is pushed to an `Input` as
 * it arrives (paused while the connection holds a read it has not consumed), output is handed over in
 * batches, synchronously when the transport has room.
 *
 * One kind for every link: a Node stream (TCP, Unix, TLS, any Duplex, the in-memory transport's pair, an effect
 * `Socket` adapted), read and written directly: a read reaches the connection in the stream's own callback,
 * with no fiber in between, and a write that fits is done without an effect.
 */
import { Duration, Effect, Exit } from "effect"
import type * as Arr from "effect/Array"
import type * as Socket from "effect/socket/Socket"
import { Buffer } from "node:buffer"
import type * as Net from "node:net"
import type * as NodeStream from "node:stream"
import * as ChatError from "../ChatError.ts"
import type { SocketOptions } from "../Listener.ts"
import type { WriteTimeout } from "./settings.ts"

/** Where a transport delivers its input. */
export interface Input {
  data(chunk: Uint8Array): void
  /** The peer's FIN: no more input. */
  end(): void
  fail(error: ChatError.ChatError): void
}

/** A connection's transport. */
export interface Transport {
  /** Stops delivering input until `resume`. */
  readonly pause: () => void
  readonly resume: () => void
  /**
   * Hands `batch` (`size` bytes) to the transport, at once: undefined when it has room for more, else an effect
   * that completes once it has room again, or fails if the write failed.
   */
  readonly write: (
    batch: Arr.NonEmptyReadonlyArray<Uint8Array>,
    size: number
  ) => Effect.Effect<void, ChatError.ChatError> | undefined
  /**
   * Ends our side once everything written has been taken by the peer (`closeWhenDone`): completes when it
   * was, fails if the peer stopped taking it.
   */
  readonly finish: Effect.Effect<void, ChatError.ChatError>
}

/** Who is told when the stream closes (destroyed, reset, or both directions ended), after the input. */
export interface Owner {
  transportClosed(): void
}

/** What went wrong under a socket error: the Node error inside it when there is one (its message says why). */
export const socketErrorCause = (error: Socket.SocketError): unknown =>
  "cause" in error.reason && error.reason.cause instanceof Error ? error.reason.cause : error

/** A read that failed. */
export const readFailed = (cause: unknown): ChatError.ChatError =>
  new ChatError.ChatError({ reason: new ChatError.ReadFailed({ cause }) })

/** An effect `Socket` that failed to open, as a read that failed. */
export const openFailed = (error: Socket.SocketError): ChatError.ChatError => readFailed(socketErrorCause(error))

/** A write that failed. */
export const writeFailed = (cause: unknown): ChatError.ChatError =>
  new ChatError.ChatError({ reason: new ChatError.WriteFailed({ cause }) })

/** A TLS handshake that failed. */
export const handshakeFailed = (cause: unknown): ChatError.ChatError =>
  new ChatError.ChatError({ reason: new ChatError.HandshakeFailed({ cause }) })

const closedUnderUs = () => new Error("the connection is closed")

/** A write to a connection that is closed. */
export const writeClosed = (): ChatError.ChatError => writeFailed(closedUnderUs())

/** A read from a connection that is closed: no more input will come. */
const readClosed = (): ChatError.ChatError => readFailed(closedUnderUs())

/** Whether the transport reads: open; suspended by an upgrade until the new stream listens; closed. */
const Reading = { Open: 0, Suspended: 1, Closed: 2 } as const
type Reading = typeof Reading[keyof typeof Reading]

const EMPTY = Buffer.alloc(0)

/** Bigger batches go out corked (one writev); smaller ones are joined and written once, which is cheaper. */
const JOIN_LIMIT = 16 * 1024

/**
 * Bytes written to `stream` that the peer has not taken yet: the stream's buffer plus, for a socket or a pipe,
 * libuv's write queue. It goes down as the peer reads, however big the write: what tells a slow peer from one
 * that stopped reading.
 */
const untaken = (stream: NodeStream.Duplex): number => {
  const handle = (stream as { readonly _handle?: { readonly writeQueueSize?: unknown } | null })._handle
  const queued = handle?.writeQueueSize
  return stream.writableLength + (typeof queued === "number" ? queued : 0)
}

// The stream's listeners are shared by every connection, not closures made for each: they find their
// transport on the stream itself (the listener's `this`). An idle connection is then a few bytes smaller.
const TRANSPORT = Symbol.for("effect-asynchat/NodeStreamTransport")
type Listened = NodeStream.Duplex & { [TRANSPORT]: NodeStreamTransport }

function onData(this: Listened, chunk: Uint8Array | string): void {
  this[TRANSPORT].input.data(typeof chunk === "string" ? Buffer.from(chunk) : chunk)
}
function onEnd(this: Listened): void {
  this[TRANSPORT].input.end()
}
function onError(this: Listened, cause: Error): void {
  this[TRANSPORT].input.fail(readFailed(cause))
}
// a close with no FIN and no error before it (a destroy): what was in flight is lost; the owner learns of it
function onClose(this: Listened): void {
  const transport = this[TRANSPORT]
  transport.input.fail(readFailed(closedUnderUs()))
  transport.owner.transportClosed()
}

/**
 * A Node stream as a transport: listeners are attached when it is made (the stream stays paused until the
 * first `resume`) and removed by `close`, which then ends the stream once what was written is flushed (for a
 * few seconds at most: `finish` is the graceful way), and destroys it. A wait for the peer to take our output
 * fails with `writeTimeout`'s error once a whole period passes without the peer taking a byte.
 */
export class NodeStreamTransport implements Transport {
  private reading: Reading = Reading.Open
  /** What the inbox asked for last: a stream taken over by an upgrade flows if the old one did. */
  private flowing = false
  // made on first use: most connections never wait, and an idle one should hold as little as it can
  private awaitDrain: Effect.Effect<void, ChatError.ChatError> | undefined = undefined
  private finishing: Effect.Effect<void, ChatError.ChatError> | undefined = undefined
  readonly input: Input
  readonly owner: Owner
  private stream: Listened
  private readonly writeTimeout: WriteTimeout | undefined

  constructor(stream: NodeStream.Duplex, input: Input, owner: Owner, writeTimeout: WriteTimeout | undefined) {
    this.input = input
    this.owner = owner
    this.writeTimeout = writeTimeout
    this.stream = this.listen(stream)
  }

  /** Listens to `stream`, which stays paused until the first `resume`. */
  private listen(stream: NodeStream.Duplex): Listened {
    const listened = stream as Listened
    listened[TRANSPORT] = this
    stream.pause()
    // the listener's guard is not needed once ours listens: one 'error' listener, not an array of two
    stream.off("error", ignore)
    stream.on("data", onData)
    stream.on("end", onEnd)
    stream.on("error", onError)
    stream.on("close", onClose)
    return listened
  }

  pause(): void {
    this.flowing = false
    this.stream.pause()
  }

  resume(): void {
    this.flowing = true
    if (this.reading === Reading.Open) this.stream.resume()
  }

  /**
   * Stops reading for an upgrade (STARTTLS): what the stream holds unread is dropped, and what arrives from now on
   * stays in it, for the TLS socket that takes it over (`upgrade`). True when something was dropped.
   */
  suspendInput(): boolean {
    const stream = this.stream
    stream.pause()
    stream.off("data", onData)
    this.reading = Reading.Suspended
    let dropped = false
    while (stream.read() !== null) dropped = true
    return dropped
  }

  /** Completes once everything written so far has left the stream's own buffer (a TLS socket takes it over next). */
  get flushed(): Effect.Effect<void, ChatError.ChatError> {
    return this.progressing(Effect.callback<void, ChatError.ChatError>((resume) => {
      const stream = this.stream
      if (stream.destroyed || stream.writableEnded) return resume(Effect.fail(writeClosed()))
      if (stream.writableLength === 0) return resume(Effect.void)
      // written after everything before it: its callback comes when they are all out
      stream.write(EMPTY, (error) => resume(error ? Effect.fail(writeFailed(error)) : Effect.void))
    }))
  }

  /**
   * The stream taken over by what `wrap` makes of it (a TLS socket), whose `handshake` decides the upgrade: the
   * transport reads and writes the new stream once it succeeds (flowing if the inbox wants input), and a failure
   * is the handshake's to report, not a transport that closed under us; the new stream is destroyed then. The old
   * stream is the new one's to close.
   */
  upgrade<S extends NodeStream.Duplex, A, E>(
    wrap: (stream: NodeStream.Duplex) => S,
    handshake: (stream: S) => Effect.Effect<A, E>
  ): Effect.Effect<A, E | ChatError.ChatError> {
    const old = this.stream
    old.off("end", onEnd)
    old.off("error", onError)
    old.off("close", onClose)
    // its errors are the new stream's to report; one must not become an uncaught exception
    old.on("error", ignore)
    let next: S
    try {
      next = wrap(old)
    } catch (cause) {
      // options Node refuses (a key it cannot read): the handshake's failure; the old stream closes with us
      return Effect.fail(handshakeFailed(cause))
    }
    next.on("error", ignore)
    // closed with the connection from now on, whatever the handshake does
    this.stream = next as NodeStream.Duplex as Listened
    return Effect.onExit(handshake(next), (exit) =>
      Effect.sync(() => {
        // a failed (or interrupted) handshake has nothing left to say: no lingering close for it
        if (Exit.isFailure(exit)) return void next.destroy()
        if (this.reading === Reading.Closed) return
        this.stream = this.listen(next)
        this.awaitDrain = undefined
        this.finishing = undefined
        this.reading = Reading.Open
        if (this.flowing) next.resume()
      }))
  }

  write(
    batch: Arr.NonEmptyReadonlyArray<Uint8Array>,
    size: number
  ): Effect.Effect<void, ChatError.ChatError> | undefined {
    const stream = this.stream
    if (stream.destroyed || stream.writableEnded) return Effect.fail(writeClosed())
    let room = true
    try {
      if (batch.length === 1) {
        room = stream.write(batch[0])
      } else if (size <= JOIN_LIMIT) {
        room = stream.write(Buffer.concat(batch, size))
      } else {
        stream.cork()
        try {
          for (let i = 0; i < batch.length; i++) room = stream.write(batch[i]) && room
        } finally {
          stream.uncork()
        }
      }
    } catch (cause) {
      return Effect.fail(writeFailed(cause))
    }
    return room
      ? undefined
      : (this.awaitDrain ??= this.progressing(this.awaitEvent("drain", () => !stream.writableNeedDrain)))
  }

  get finish(): Effect.Effect<void, ChatError.ChatError> {
    return this.finishing ??= Effect.suspend(() => {
      if (!this.stream.writableEnded) this.stream.end()
      return this.progressing(this.awaitEvent("finish", () => this.stream.writableFinished))
    })
  }

  /**
   * Waits for `event` unless `done` already holds ('drain' may come between a write and the wait for it: a
   * fiber yields to the scheduler in between), failing if the stream errs or closes first, unless that is the
   * end being waited for (`finish`: a peer that hangs up as we do is no failure).
   */
  private awaitEvent(event: "drain" | "finish", done: () => boolean): Effect.Effect<void, ChatError.ChatError> {
    const stream = this.stream
    return Effect.callback<void, ChatError.ChatError>((resume) => {
      const closing = event === "finish"
      if (done() || (closing && stream.destroyed)) return resume(Effect.void)
      if (stream.destroyed) return resume(Effect.fail(writeClosed()))
      const cleanup = () => {
        stream.off(event, onEvent)
        stream.off("error", onFailure)
        stream.off("close", onGone)
      }
      const onEvent = () => {
        cleanup()
        resume(Effect.void)
      }
      const onFailure = (cause: Error) => {
        cleanup()
        resume(closing ? Effect.void : Effect.fail(writeFailed(cause)))
      }
      const onGone = () => {
        cleanup()
        resume(closing ? Effect.void : Effect.fail(writeClosed()))
      }
      stream.on(event, onEvent)
      stream.on("error", onFailure)
      stream.on("close", onGone)
      return Effect.sync(cleanup)
    })
  }

  /** `wait`, failed once a whole `writeTimeout` passes in which the peer took nothing of what is buffered. */
  private progressing(wait: Effect.Effect<void, ChatError.ChatError>): Effect.Effect<void, ChatError.ChatError> {
    const writeTimeout = this.writeTimeout
    if (writeTimeout === undefined) return wait
    const stalled = Effect.suspend(() => {
      let left = untaken(this.stream)
      const check: Effect.Effect<never, ChatError.ChatError> = Effect.flatMap(
        Effect.sleep(writeTimeout.duration),
        () => {
          const now = untaken(this.stream)
          if (now >= left) return writeTimeout.failure
          left = now
          return check
        }
      )
      return check
    })
    return Effect.raceFirst(wait, stalled)
  }

  /** Stops listening, and ends and destroys the stream, letting what the kernel has not taken drain first. */
  close(): void {
    const stream = this.stream
    this.reading = Reading.Closed
    // a reader still waiting (a client's, in another fiber) learns that no more input will come
    this.input.fail(readClosed())
    stream.off("data", onData)
    stream.off("end", onEnd)
    stream.off("error", onError)
    stream.off("close", onClose)
    closeSoon(stream)
  }
}

/**
 * Ends `stream` and destroys it once what was written is flushed and the peer has ended its side too: a lingering
 * close, as Apache's and nginx's. Input that comes meanwhile is dropped unread: a socket destroyed with unread
 * input makes the kernel reset the connection, and a reset can destroy our last answers before the peer reads
 * them (a pipelining client whose next requests crossed our close). The peer gets a little time for all this,
 * not forever: one that neither reads nor hangs up cannot keep the stream open long past its scope.
 */
export const closeSoon = (stream: NodeStream.Duplex): void => {
  // an error now (a peer's reset under our last write) must not become an uncaught exception: nobody else listens.
  // Even on a stream destroyed already: a destroy with an error emits it a tick later (a TLS socket whose pending
  // write to a closed in-process stream was cancelled, 'write ECANCELED').
  stream.on("error", ignore)
  if (stream.destroyed) return
  if (stream.writable) stream.end()
  if (stream.writableFinished && stream.readableEnded) {
    stream.destroy()
    return
  }
  const linger = setTimeout(() => stream.destroy(), LINGER_MILLIS)
  linger.unref()
  const destroy = () => {
    if (!stream.writableFinished || !stream.readableEnded) return
    clearTimeout(linger)
    stream.destroy()
  }
  stream.once("finish", destroy)
  stream.once("end", destroy)
  stream.once("close", () => clearTimeout(linger))
  // flowing without a 'data' listener: what arrives is dropped, so the peer's FIN ('end') is seen
  stream.resume()
}

/** A no-op error listener: keeps an error on a stream nobody else listens to from being thrown. */
export const ignore = () => {}

/** How long a closing stream may take to hand its last bytes to the kernel and see the peer's end. */
const LINGER_MILLIS = 5_000

/** The socket options of `options` in Node's terms (for `Net.createServer` and `Net.createConnection`). */
export const nodeSocketOptions = (options: SocketOptions): Pick<
  Net.NetConnectOpts & Net.ServerOpts,
  "noDelay" | "keepAlive" | "keepAliveInitialDelay"
> =>
  definedOnly({
    noDelay: options.noDelay,
    keepAlive: options.keepAlive,
    keepAliveInitialDelay: options.keepAliveInitialDelay === undefined
      ? undefined
      : Duration.toMillis(Duration.fromInputUnsafe(options.keepAliveInitialDelay))
  })

/** `options` without its undefined fields: Node's options take an undefined one as a value. */
export const definedOnly = <A extends object>(options: A): A =>
  Object.fromEntries(Object.entries(options).filter(([, v]) => v !== undefined)) as A
