/**
 * Supervision of a connection's life: how its end is classified, logged and counted, and the span it runs in.
 * A server logs every ending with the connection's id and peer (routine ones at `routineLogLevel`); a client
 * gets its outcome back instead.
 */
import { Cause, Effect, Exit, Metric, Tracer } from "effect"
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

/** `self` in the connection's span, when a tracing backend is installed. */
export const spanned = <A, E, R>(self: Effect.Effect<A, E, R>, id: number, peer: string, role: "server" | "client") =>
  // Without a tracing backend a span is never seen, and costs an idle connection ~3 KiB: made only with one.
  Effect.withFiber((fiber) =>
    fiber.getRef(Tracer.Tracer) === Tracer.nativeTracer ? self : Effect.withSpan(
      self,
      "effect-asynchat.connection",
      {
        attributes: { "connection.id": id, "net.peer": peer, "connection.role": role },
        kind: role,
        // the call site is always this line: a stack captured per connection would only cost memory
        captureStackTrace: false
      }
    )
  )
