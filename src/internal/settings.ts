/**
 * A connection's limits, resolved once from the options a server (or client) was given: every connection of a
 * server shares one `Settings`, timeout errors included.
 */
import { Duration, Effect, type LogLevel } from "effect"
import * as ChatError from "../ChatError.ts"
import type { Options as ServerOptions } from "../ChatServer.ts"
import type { ConnectionOptions } from "../ConnectionOptions.ts"
import { defaultMaxFrameLength } from "../Framing.ts"

/** How long a transport's wait for the peer may go without progress, and the error it then fails with. */
export interface WriteTimeout {
  readonly duration: Duration.Duration
  readonly failure: Effect.Effect<never, ChatError.ChatError>
}

/** Limits of one connection. */
export interface Settings {
  readonly maxFrameLength: number
  readonly idleTimeout: Duration.Duration | undefined
  readonly frameTimeout: Duration.Duration | undefined
  // the timeouts' errors, made once per server (or client) rather than per connection
  readonly idleError: () => ChatError.ChatError
  readonly frameError: () => ChatError.ChatError
  readonly writeTimeout: WriteTimeout | undefined
  readonly highWaterMark: number
  readonly lowWaterMark: number
  readonly outputLimit: number
  /** How loudly a server logs a connection that ended for a routine reason (see `Supervision.isRoutine`). */
  readonly routineLogLevel: LogLevel.Severity | "None"
}

const finiteOrUndefined = (input: Duration.Input | undefined, fallback: Duration.Input) => {
  const d = Duration.fromInputUnsafe(input ?? fallback)
  return Duration.isFinite(d) ? d : undefined
}

const timeoutError = (
  make: typeof ChatError.IdleTimeout | typeof ChatError.FrameTimeout | typeof ChatError.WriteTimeout,
  timeout: Duration.Duration
) =>
() => new ChatError.ChatError({ reason: new make({ timeout }) })

/** The limits of `options`, with the defaults documented on `ConnectionOptions`. */
export const settingsOf = (options: ConnectionOptions & Pick<ServerOptions, "routineLogLevel">): Settings => {
  const highWaterMark = options.highWaterMark ?? 64 * 1024
  const idleTimeout = finiteOrUndefined(options.idleTimeout, "5 minutes")
  const frameTimeout = finiteOrUndefined(options.frameTimeout, "30 seconds")
  const writeTimeout = finiteOrUndefined(options.writeTimeout, "1 minute")
  return {
    maxFrameLength: options.maxFrameLength ?? defaultMaxFrameLength,
    idleTimeout,
    frameTimeout,
    idleError: timeoutError(ChatError.IdleTimeout, idleTimeout ?? Duration.infinity),
    frameError: timeoutError(ChatError.FrameTimeout, frameTimeout ?? Duration.infinity),
    writeTimeout: writeTimeout === undefined ? undefined : {
      duration: writeTimeout,
      failure: Effect.failSync(timeoutError(ChatError.WriteTimeout, writeTimeout))
    },
    highWaterMark,
    lowWaterMark: Math.min(options.lowWaterMark ?? 32 * 1024, highWaterMark),
    outputLimit: Math.max(options.outputLimit ?? 16 * highWaterMark, highWaterMark),
    routineLogLevel: options.routineLogLevel ?? "Debug"
  }
}

/** True when `settings` has a timeout to watch on input. */
export const isTimed = (settings: Settings): boolean =>
  settings.idleTimeout !== undefined || settings.frameTimeout !== undefined
