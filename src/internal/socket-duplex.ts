/**
 * Any effect `Socket` as a Node `Duplex`, so that a connection over a socket of the user's (a WebSocket, a
 * transform stream, one built with `Socket.make`) runs on the same stream transport as TCP does.
 *
 * The socket's reader and writer are acquired in a scope of the stream's own, with the services of the
 * context it is made with (a `TestClock`, the user's own). A pump fiber pulls while the stream's consumer
 * wants data (between a `_read` and a `push` that says it has enough); the peer's normal close (code 1000) is
 * the end of input, any other failure destroys the stream. Writes go through the writer, each called back
 * once the writer is done with it; `end()` releases the writer (a half-close where the socket has one), and
 * `destroy()` interrupts what is under way and closes the scope, releasing reader and writer, before `'close'`.
 */
import { Cause, type Context, Deferred, Effect, Exit, Fiber, Scope } from "effect"
import type * as Arr from "effect/Array"
import * as Socket from "effect/socket/Socket"
import { Buffer } from "node:buffer"
import { Duplex } from "node:stream"
import { ignore } from "./transport.ts"

type Callback = (error?: Error | null) => void

/** The stream's buffers, in bytes (default Node's). */
export interface Options {
  readonly readableHighWaterMark?: number | undefined
  readonly writableHighWaterMark?: number | undefined
}

interface Opened {
  readonly reader: Socket.Reader
  readonly writer: Socket.Writer
  /** The writer's own scope inside the stream's, so that the output can end before the input. */
  readonly writerScope: Scope.Closeable
}

const open = (socket: Socket.Socket, scope: Scope.Closeable): Effect.Effect<Opened, Socket.SocketError> =>
  Effect.flatMap(
    Scope.provide(socket.reader, scope),
    (reader) =>
      Effect.flatMap(
        Scope.fork(scope),
        (writerScope) =>
          Effect.map(Scope.provide(socket.writer, writerScope), (writer) => ({ reader, writer, writerScope }))
      )
  )

/** The peer's normal close: the end of input, not an error. */
const isEndOfInput = (error: unknown): boolean =>
  Socket.isSocketError(error) && error.reason._tag === "SocketCloseError" && error.reason.code === 1000

/**
 * An Error saying `what` failed and why: the message of the Node error under the socket error when there is
 * one, and its `code` (ECONNRESET, EPIPE...), so that it reads as a socket's would; the socket error is its cause.
 */
const failure = (what: string, error: unknown): Error => {
  const inner = Socket.isSocketError(error) && "cause" in error.reason && error.reason.cause instanceof Error
    ? error.reason.cause as NodeJS.ErrnoException
    : undefined
  const out: NodeJS.ErrnoException = new Error(`${what}: ${why(error, inner)}`, { cause: error })
  if (typeof inner?.code === "string") out.code = inner.code
  return out
}

const why = (error: unknown, inner: Error | undefined): string => {
  if (Socket.isSocketError(error) && error.reason._tag === "SocketCloseError") {
    return `closed with code ${error.reason.message}`
  }
  if (inner !== undefined) return inner.message
  return error instanceof Error ? error.message : String(error)
}

/**
 * What a failed pull or write destroys the stream with: the socket's failure said as a socket's, or a defect
 * (a listener that threw inside a push) as it is.
 */
const failureOf = (what: string, cause: Cause.Cause<Socket.SocketError>): Error => {
  const error = Cause.squash(cause)
  if (Socket.isSocketError(error)) return failure(what, error)
  return error instanceof Error ? error : new Error(String(error))
}

/** What a write under way when the stream was destroyed is called back with, as Node does. */
const destroyedError = (): Error =>
  Object.assign(new Error("Cannot call write after a stream was destroyed"), { code: "ERR_STREAM_DESTROYED" })

const toBuffer = (chunk: Uint8Array | string): Uint8Array => typeof chunk === "string" ? Buffer.from(chunk) : chunk

class SocketDuplex extends Duplex {
  /** Done once the reader and writer are acquired, or failed with why they were not. */
  readonly whenOpen: Deferred.Deferred<void, Socket.SocketError> = Deferred.makeUnsafe()
  private readonly context: Context.Context<never>
  private readonly scope: Scope.Closeable = Scope.makeUnsafe()
  private opened: Opened | undefined = undefined
  private opening: Fiber.Fiber<Opened, Socket.SocketError> | undefined = undefined
  /** Pulls until the consumer has enough; made once the reader is there. */
  private pump: Effect.Effect<void> | undefined = undefined
  private pumping = false
  private pumpFiber: Fiber.Fiber<void> | undefined = undefined
  /** The consumer asked for data (`_read`) and no push since said it had enough. */
  private wanted = false
  private inputEnded = false
  private writing: Fiber.Fiber<void, Socket.SocketError> | undefined = undefined
  // a write (or the end) that came before the socket opened: Node hands over one at a time
  private early: Arr.NonEmptyReadonlyArray<Uint8Array> | "end" | undefined = undefined
  private earlyCallback: Callback | undefined = undefined

  constructor(socket: Socket.Socket, context: Context.Context<never>, options: Options) {
    super({
      allowHalfOpen: true,
      ...(options.readableHighWaterMark === undefined ? {} : { readableHighWaterMark: options.readableHighWaterMark }),
      ...(options.writableHighWaterMark === undefined ? {} : { writableHighWaterMark: options.writableHighWaterMark })
    })
    this.context = context
    const opening = Effect.runForkWith(context)(open(socket, this.scope))
    if (opening.pollUnsafe() === undefined) this.opening = opening
    opening.addObserver((exit) => this.onOpen(exit))
  }

  private onOpen(exit: Exit.Exit<Opened, Socket.SocketError>): void {
    this.opening = undefined
    Deferred.doneUnsafe(this.whenOpen, Exit.asVoid(exit))
    // interrupted by a destroy, or opened as it came: closing the scope releases what was acquired
    if (this.destroyed) return
    if (Exit.isFailure(exit)) {
      this.destroy(failure("the socket did not open", Cause.squash(exit.cause)))
      return
    }
    const opened = exit.value
    this.opened = opened
    const loop: Effect.Effect<void, Socket.SocketError> = Effect.flatMap(
      opened.reader.pull,
      (chunks) => this.deliver(chunks) ? loop : Effect.void
    )
    this.pump = Effect.catchCause(loop, (cause) => Effect.sync(() => this.pullFailed(cause)))
    if (this.wanted) this.startPump()
    const early = this.early
    const callback = this.earlyCallback
    this.early = undefined
    this.earlyCallback = undefined
    if (early === "end") this._final(callback!)
    else if (early !== undefined) this.send(early, callback!)
  }

  override _read(): void {
    this.wanted = true
    if (!this.pumping && !this.inputEnded && this.pump !== undefined) this.startPump()
  }

  private startPump(): void {
    this.pumping = true
    const fiber = Effect.runForkWith(this.context)(this.pump!)
    // one that pulled and stopped at once is over already
    if (fiber.pollUnsafe() === undefined) this.pumpFiber = fiber
  }

  /** Pushes what was pulled; whether to pull again. */
  private deliver(chunks: Arr.NonEmptyReadonlyArray<Uint8Array | string>): boolean {
    for (let i = 0; i < chunks.length; i++) {
      // a _read during the push (a listener that reads) sets it again
      this.wanted = false
      if (this.push(toBuffer(chunks[i]))) this.wanted = true
    }
    if (this.wanted && !this.destroyed) return true
    this.pumping = false
    return false
  }

  private pullFailed(cause: Cause.Cause<Socket.SocketError>): void {
    this.pumping = false
    if (this.destroyed || Cause.hasInterruptsOnly(cause)) return
    if (isEndOfInput(Cause.squash(cause))) {
      this.inputEnded = true
      this.push(null)
    } else {
      this.destroy(failureOf("the socket's read failed", cause))
    }
  }

  override _write(chunk: Uint8Array, _encoding: BufferEncoding, callback: Callback): void {
    this.send([chunk], callback)
  }

  override _writev(chunks: Array<{ chunk: Uint8Array }>, callback: Callback): void {
    this.send(chunks.map((c) => c.chunk) as unknown as Arr.NonEmptyReadonlyArray<Uint8Array>, callback)
  }

  private send(chunks: Arr.NonEmptyReadonlyArray<Uint8Array>, callback: Callback): void {
    const opened = this.opened
    if (opened === undefined) {
      this.early = chunks
      this.earlyCallback = callback
      return
    }
    this.run(
      chunks.length === 1 ? opened.writer.write(chunks[0]) : opened.writer.writeAll(chunks),
      "the socket's write failed",
      callback
    )
  }

  override _final(callback: Callback): void {
    const opened = this.opened
    if (opened === undefined) {
      this.early = "end"
      this.earlyCallback = callback
      return
    }
    // releasing the writer ends our output, and only it (a half-close)
    this.run(Scope.close(opened.writerScope, Exit.void), "the socket's end failed", callback)
  }

  /** Runs a write or the end, calling back once it is done. */
  private run(effect: Effect.Effect<void, Socket.SocketError>, what: string, callback: Callback): void {
    const fiber = Effect.runForkWith(this.context)(effect)
    if (fiber.pollUnsafe() === undefined) this.writing = fiber
    fiber.addObserver((exit) => {
      if (this.writing === fiber) this.writing = undefined
      if (Exit.isSuccess(exit)) callback()
      else if (Cause.hasInterruptsOnly(exit.cause)) callback(destroyedError())
      else callback(failureOf(what, exit.cause))
    })
  }

  override _destroy(error: Error | null, callback: Callback): void {
    const fibers: Array<Fiber.Fiber<unknown, unknown>> = []
    if (this.opening !== undefined) fibers.push(this.opening)
    if (this.pumpFiber !== undefined) fibers.push(this.pumpFiber)
    if (this.writing !== undefined) fibers.push(this.writing)
    this.opening = undefined
    this.pumpFiber = undefined
    this.writing = undefined
    this.pump = undefined
    const early = this.earlyCallback
    this.early = undefined
    this.earlyCallback = undefined
    // what is under way stops first, so that nothing pulls or writes on a released socket
    const teardown = Effect.andThen(Fiber.interruptAll(fibers), Scope.close(this.scope, Exit.void))
    Effect.runForkWith(this.context)(teardown).addObserver(() => {
      early?.(destroyedError())
      callback(error)
    })
  }
}

/**
 * `socket` as a Node `Duplex`: its reader and writer are acquired at once, in a scope of the stream's own,
 * running with `context`'s services; a failure to acquire them destroys the stream with an Error saying why,
 * whose `cause` is the socket error.
 */
export const socketDuplex = (
  socket: Socket.Socket,
  context: Context.Context<never>,
  options: Options = {}
): Duplex => new SocketDuplex(socket, context, options)

/**
 * Releases the socket once our output is out: at once unless a connection ended the stream, else at its
 * 'finish' (the writer released). Not on the peer's end as a Node socket is (`closeSoon`'s linger): a socket
 * may have no half-close (a WebSocket), and releasing the reader is its close. A finish that never comes is
 * bounded by that linger, which destroys the stream.
 */
const release = (stream: Duplex): void => {
  if (!stream.writableEnded || stream.writableFinished) stream.destroy()
  else stream.once("finish", () => stream.destroy())
}

/**
 * `socket` as a Node `Duplex` once its reader and writer are acquired, in the current scope and with the current
 * services: a failure to open is this effect's. The stream is destroyed when the scope closes, once what a
 * connection wrote before it ended the stream is out.
 */
export const acquire = (
  socket: Socket.Socket,
  options: Options = {}
): Effect.Effect<Duplex, Socket.SocketError, Scope.Scope> =>
  Effect.withFiber((fiber) => {
    const stream = new SocketDuplex(socket, fiber.context as Context.Context<never>, options)
    // a failure to open is this effect's, not an uncaught 'error'; a connection's transport listens once it runs
    stream.on("error", ignore)
    return Effect.andThen(
      Effect.addFinalizer(() => Effect.sync(() => release(stream))),
      Effect.as(Deferred.await(stream.whenOpen), stream as Duplex)
    )
  })
