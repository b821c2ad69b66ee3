/**
 * Byte helpers shared by the tests, and the waiting that peers recording what they receive share.
 */
import { type Duration, Effect, Exit, Layer, Logger, type LogLevel, References, Stream } from "effect"
import type * as NodeStream from "node:stream"
import * as Framing from "../src/Framing.ts"
import type * as Listener from "../src/Listener.ts"
import type * as Terminator from "../src/Terminator.ts"

/** Lets Node's ticks and immediates run, and the fibers they wake: not on the test clock. */
export const nextTurn = Effect.promise(() => new Promise<void>((resolve) => setImmediate(resolve)))

/** Waits until `predicate` holds, letting Node run in between (ten thousand turns at most: not on the test clock). */
export const until = (predicate: () => boolean): Effect.Effect<void> => {
  const check = (turns: number): Effect.Effect<void> =>
    Effect.suspend(() => {
      if (predicate()) return Effect.void
      if (turns === 0) return Effect.die(new Error("the condition never held"))
      return Effect.andThen(nextTurn, check(turns - 1))
    })
  return check(10_000)
}

/**
 * Everything `stream` emits, in order: its data, its errors, and which of `events` came when (an error is one
 * too); `text` is what it read, one char per byte.
 */
export const recordStream = (stream: NodeStream.Duplex, events: ReadonlyArray<string>) => {
  const seen: Array<string> = []
  const chunks: Array<Buffer> = []
  const errors: Array<NodeJS.ErrnoException> = []
  stream.on("data", (chunk: Buffer) => {
    chunks.push(chunk)
  })
  for (const event of events) stream.on(event, () => seen.push(event))
  stream.on("error", (error: NodeJS.ErrnoException) => {
    errors.push(error)
    seen.push("error")
  })
  return { events: seen, chunks, errors, text: () => Buffer.concat(chunks).toString("latin1") }
}

/** The Node stream of a link that is one (TCP, Unix, any Duplex, the in-memory transport's ends). */
export const streamOf = (link: Listener.Link): NodeStream.Duplex => {
  if (link._tag !== "Stream") throw new Error(`not a stream link: ${link._tag}`)
  return link.stream
}

/**
 * The waits on a recording peer's state: `until` waits until `predicate` holds, checked again at every `wake` (an
 * event the peer recorded), and dies after `timeout` with what `seen` says arrived.
 */
export class Wakes {
  private readonly waiting = new Set<() => void>()

  wake(): void {
    // A wait that is over removes itself, which a Set's iteration allows.
    for (const wake of this.waiting) wake()
  }

  until(predicate: () => boolean, timeout: Duration.Input, seen: () => string): Effect.Effect<void> {
    return Effect.callback<void>((resume) => {
      if (predicate()) return resume(Effect.void)
      const wake = () => {
        if (!predicate()) return
        this.waiting.delete(wake)
        resume(Effect.void)
      }
      this.waiting.add(wake)
      return Effect.sync(() => this.waiting.delete(wake))
    }).pipe(Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.die(new Error(seen())) }))
  }
}

/** A line a test's logger received. */
export interface LoggedLine {
  readonly message: string
  readonly level: LogLevel.LogLevel
  readonly annotations: Record<string, unknown>
}

/**
 * A logger that records every line, at every level, in `lines`: provide `layer` to what is under test.
 *
 * @example
 * const logs = captureLogs()
 * yield* program.pipe(Effect.provide(logs.layer))
 * expect(logs.find("connection closed")?.level).toBe("Debug")
 */
export const captureLogs = () => {
  const lines: Array<LoggedLine> = []
  const capture = Logger.make((options) => {
    const message = options.message
    lines.push({
      message: (Array.isArray(message) ? message : [message]).map(String).join(" "),
      level: options.logLevel,
      annotations: { ...options.fiber.getRef(References.CurrentLogAnnotations) }
    })
  })
  return {
    lines,
    layer: Layer.merge(Logger.layer([capture]), Layer.succeed(References.MinimumLogLevel, "All")),
    /** The first line whose message contains `text`. */
    find: (text: string) => lines.find((line) => line.message.includes(text)),
    /** Every message, for an assertion's failure text. */
    messages: () => JSON.stringify(lines.map((line) => `${line.level}: ${line.message}`))
  }
}

const encoder = new TextEncoder()
const decoder = new TextDecoder()

/** UTF-8 bytes of a string. */
export const bytes = (s: string): Uint8Array => encoder.encode(s)

/** A string from UTF-8 bytes. */
export const text = (b: Uint8Array): string => decoder.decode(b)

/** Latin-1 rendering, one char per byte: exact for arbitrary bytes. */
export const latin1 = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString("latin1")

/** Splits `data` into pieces of `size` bytes (the last may be shorter). */
export const chunkEvery = (data: Uint8Array, size: number): Array<Uint8Array> => {
  const out: Array<Uint8Array> = []
  for (let i = 0; i < data.length; i += size) out.push(data.subarray(i, i + size))
  return out
}

/** Splits `data` at the given cut points (sorted, deduplicated, within bounds). */
export const splitAt = (data: Uint8Array, cuts: ReadonlyArray<number>): Array<Uint8Array> => {
  const points = [...new Set(cuts.map((c) => Math.max(0, Math.min(data.length, c))))].toSorted((a, b) => a - b)
  const out: Array<Uint8Array> = []
  let from = 0
  for (const p of points) {
    out.push(data.subarray(from, p))
    from = p
  }
  out.push(data.subarray(from))
  return out
}

/** A frame rendered for comparison: its bytes as latin-1, with "…" appended when it was not terminated. */
export const show = (frame: Framing.Frame): string => latin1(frame.bytes) + (frame.terminated ? "" : "…")

/** Runs the static form over `chunks` and returns the exit with frames rendered by {@link show}. */
export const frameChunks = (
  chunks: ReadonlyArray<Uint8Array>,
  terminator: Terminator.Terminator,
  options?: Framing.Options
): Exit.Exit<Array<string>, Framing.FramingError> =>
  Stream.fromIterable(chunks).pipe(
    Framing.frames(terminator, options),
    Stream.map(show),
    Stream.runCollect,
    Effect.exit,
    Effect.runSync
  )

/** Whether `pid` is a running process (signal 0 checks without signalling). */
export const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}
