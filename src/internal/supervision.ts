/**
 * Supervision of a connection's life: how its end is classified, logged and counted, and the span it runs in.
 * A server logs every ending with the connection's id and peer (routine ones at `routineLogLevel`); a client
 * gets its outcome back instead.
 */
import { Cause, Effect, Exit, Fiber, Metric, type Scope, Tracer } from "effect"
import * as ChatError from "../ChatError.ts"
import * as ChatMetrics from "../ChatMetrics.ts"
import type { Settings } from "./settings.ts"

/** Which `errors` metric a failed connection counts under, and how loudly it is logged. */
const classify = (cause: Cause.Cause<unknown>): { readonly reason: string; readonly defect: boolean } => {
  if (Cause.hasDies(cause)) return { reason: "Defect", defect: true }
  const error = Cause.squash(cause)
  return ChatError.isChatError(error)
    ? { reason: error.reason._tag, defect: false }
    : { reason: "HandlerFailed", defect: false }
}

/**
 * The reasons a server on the internet sees all day, which no operator acts on: a peer that resets, goes quiet,
 * stalls mid-frame or stops reading (Netty logs them at debug). An over-long frame, a producer's failure or a
 * handler's own failure is worth a warning.
 */
export const isRoutine = (reason: string): boolean =>
  reason === "ReadFailed" || reason === "WriteFailed" || reason === "IdleTimeout" || reason === "FrameTimeout" ||
  reason === "WriteTimeout"

/** Logs and counts how a connection ended: on a server only; a client gets its outcome back instead. */
export const logEnd = (
  exit: Exit.Exit<unknown, unknown>,
  role: "server" | "client",
  routineLevel: Settings["routineLogLevel"]
): Effect.Effect<void> => {
  if (Exit.isSuccess(exit)) return Effect.logDebug("connection closed")
  if (role === "client") return Effect.void
  if (Cause.hasInterruptsOnly(exit.cause)) return Effect.logDebug("connection interrupted")
  const { defect, reason } = classify(exit.cause)
  const error = Cause.squash(exit.cause)
  // The framework's own reasons (a timeout, an over-long frame, a reset) are one line, no stack; a handler's
  // own failure or a defect is a bug to look into: its whole cause.
  const log = defect
    ? Effect.logError(`connection closed by ${reason}`, exit.cause)
    : !ChatError.isChatError(error)
    ? Effect.logWarning(`connection closed by ${reason}`, exit.cause)
    : !isRoutine(reason)
    ? Effect.logWarning(`connection closed by ${reason}: ${error.message}`)
    : routineLevel === "None"
    ? Effect.void
    : Effect.logWithLevel(routineLevel)(`connection closed by ${reason}: ${error.message}`)
  return Effect.andThen(Metric.update(Metric.withAttributes(ChatMetrics.errors, { reason }), 1), log)
}

// Effect.ignore without the closures it keeps on every connection's fiber: a typed failure is dropped, a defect
// or an interruption goes on.
export const ignoreRecoverable = (cause: Cause.Cause<unknown>): Effect.Effect<void> =>
  Cause.hasDies(cause) || !Cause.hasFails(cause) ? Effect.failCause(cause as Cause.Cause<never>) : Effect.void

/** `self` in the connection's span: made only where `isTraced`. */
export const span = <A, E, R>(self: Effect.Effect<A, E, R>, id: number, peer: string, role: "server" | "client") =>
  Effect.withSpan(self, "effect-asynchat.connection", {
    attributes: { "connection.id": id, "net.peer": peer, "connection.role": role },
    kind: role,
    // the call site is always this line: a stack captured per connection would only cost memory
    captureStackTrace: false
  })

/** Without a tracing backend a span is never seen, and costs an idle connection ~3 KiB: one only with one. */
export const isTraced = (fiber: Fiber.Fiber<unknown, unknown>): boolean =>
  fiber.getRef(Tracer.Tracer) !== Tracer.nativeTracer

/**
 * The fibers of a server's connections, so that a graceful shutdown waits for them and the server's scope
 * interrupts what is left (`FiberSet`'s job). Each fiber adds itself as it starts and removes itself as its life
 * ends, its last step: `FiberSet` adds an observer to every fiber instead, a closure, its context and an array
 * on every connection. A fiber that starts once the set is closed is interrupted at once.
 */
export class Fibers {
  private readonly fibers = new Set<Fiber.Fiber<unknown, unknown>>()
  private closed = false
  /** The shutdown waiting for the set to empty, if it waits. */
  private emptied: (() => void) | undefined = undefined

  /** The current fiber starts: it is added, or interrupted if the set is closed. */
  add(fiber: Fiber.Fiber<unknown, unknown>): void {
    if (this.closed) fiber.interruptUnsafe()
    else this.fibers.add(fiber)
  }

  /** Removes the current fiber: the last step of its life. */
  readonly removeCurrent: Effect.Effect<void> = Effect.withFiber((fiber) => {
    this.fibers.delete(fiber)
    if (this.fibers.size === 0) this.emptied?.()
    return Effect.void
  })

  /** `effect`, with the fiber that runs it in the set meanwhile: as the effect of a fiber of its own. */
  tracked<A, E, R>(effect: Effect.Effect<A, E, R>): Effect.Effect<A, E, R> {
    return Effect.withFiber((fiber) => {
      this.add(fiber)
      return Effect.ensuring(effect, this.removeCurrent)
    })
  }

  /** Completes once no fiber is left (or the set is closed). */
  readonly awaitEmpty: Effect.Effect<void> = Effect.callback<void>((resume) => {
    if (this.closed || this.fibers.size === 0) return resume(Effect.void)
    this.emptied = () => {
      this.emptied = undefined
      resume(Effect.void)
    }
    return Effect.sync(() => {
      this.emptied = undefined
    })
  })

  /** A set in the current scope, whose closing interrupts the fibers left and waits for them. */
  static readonly make: Effect.Effect<Fibers, never, Scope.Scope> = Effect.acquireRelease(
    Effect.sync(() => new Fibers()),
    (set) =>
      Effect.suspend(() => {
        set.closed = true
        return Fiber.interruptAll(Array.from(set.fibers))
      })
  )
}
