import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import type * as Arr from "effect/Array"
import * as Socket from "effect/socket/Socket"
import { TestClock } from "effect/testing"
import { Buffer } from "node:buffer"
import * as Net from "node:net"
import type { Duplex } from "node:stream"
import { duplexPair } from "../../src/internal/memory-duplex.ts"
import { socketDuplex } from "../../src/internal/socket-duplex.ts"
import { nextTurn as settle, recordStream, until } from "../helpers.ts"

/** Everything a stream emits, in order. */
const record = (stream: Duplex) => recordStream(stream, ["end", "finish", "close"])

type Pulled = Arr.NonEmptyReadonlyArray<Uint8Array | string>

/**
 * A socket built by hand that records what is done to it: pulls (and the ones interrupted), writes, and the
 * release of its reader and writer. `send` queues what the next pulls return; `openMillis` and `writeMillis`
 * make opening and each write take that long on the Effect clock.
 */
const handBuilt = (options: {
  readonly openMillis?: number
  readonly writeMillis?: number
  readonly openError?: Socket.SocketError
  readonly writeError?: Socket.SocketError
} = {}) => {
  const state = {
    pulls: 0,
    interruptedPulls: 0,
    interruptedWrites: 0,
    written: [] as Array<string>,
    released: [] as Array<string>,
    queued: [] as Array<Pulled | Socket.SocketError>
  }
  let waiting: ((effect: Effect.Effect<Pulled, Socket.SocketError>) => void) | undefined = undefined
  const take = (resume: (effect: Effect.Effect<Pulled, Socket.SocketError>) => void) => {
    const item = state.queued.shift()!
    resume(Socket.isSocketError(item) ? Effect.fail(item) : Effect.succeed(item))
  }
  const pull = Effect.callback<Pulled, Socket.SocketError>((resume) => {
    state.pulls++
    if (state.queued.length > 0) return take(resume)
    waiting = resume
    return Effect.sync(() => {
      waiting = undefined
      state.interruptedPulls++
    })
  })
  const send = (item: Pulled | Socket.SocketError) => {
    state.queued.push(item)
    const resume = waiting
    waiting = undefined
    if (resume !== undefined) take(resume)
  }
  const write = (chunks: ReadonlyArray<Uint8Array | string>) =>
    Effect.suspend(() => {
      if (options.writeError !== undefined) return Effect.fail(options.writeError)
      return Effect.andThen(
        options.writeMillis === undefined ? Effect.void : Effect.sleep(options.writeMillis),
        Effect.sync(() => {
          state.written.push(chunks.map((c) => typeof c === "string" ? c : Buffer.from(c).toString()).join(""))
        })
      )
    }).pipe(Effect.onInterrupt(() =>
      Effect.sync(() => {
        state.interruptedWrites++
      })
    ))
  const socket = Socket.make({
    // the wait to open is interruptible, as a connect is; the acquisition itself is not
    reader: Effect.andThen(
      options.openMillis === undefined ? Effect.void : Effect.sleep(options.openMillis),
      Effect.acquireRelease(
        options.openError === undefined
          ? Effect.succeed<Socket.Reader>({ pull, upgrade: Socket.SocketUpgradeError.unsupported })
          : Effect.fail(options.openError),
        () => Effect.sync(() => state.released.push("reader"))
      )
    ),
    writer: Effect.acquireRelease(
      Effect.succeed<Socket.Writer>({
        write: (chunk) => Socket.isCloseEvent(chunk) ? Effect.void : write([chunk]),
        writeAll: write
      }),
      () => Effect.sync(() => state.released.push("writer"))
    )
  })
  return { socket, state, send }
}

const closed = (code: number) => new Socket.SocketError({ reason: new Socket.SocketCloseError({ code }) })

const resetBy = (message: string) =>
  new Socket.SocketError({
    reason: new Socket.SocketReadError({ cause: Object.assign(new Error(message), { code: "ECONNRESET" }) })
  })

/** A hand-built socket as a Duplex on the test's context. */
const wrap = (options: Parameters<typeof handBuilt>[0] = {}, highWaterMark?: number) =>
  Effect.map(Effect.context<never>(), (context) => {
    const peer = handBuilt(options)
    const stream = socketDuplex(
      peer.socket,
      context,
      highWaterMark === undefined ? {} : { readableHighWaterMark: highWaterMark }
    )
    return { ...peer, stream, seen: record(stream) }
  })

describe("socketDuplex", () => {
  it.effect("reads what the socket's reader pulls, strings as bytes, and ends at its normal close", () =>
    Effect.gen(function*() {
      const { send, seen, state } = yield* wrap()
      send(["hello", Buffer.from(" ")])
      send([new TextEncoder().encode("world")])
      yield* until(() => seen.text() === "hello world")
      expect(seen.chunks.every((c) => Buffer.isBuffer(c))).toBe(true)
      send(closed(1000))
      yield* until(() => seen.events.includes("end"))
      expect(seen.errors).toEqual([])
      // the end of input only: our output is still open
      expect(state.released).toEqual([])
    }))

  it.effect("writes through the writer, each called back once the writer is done with it", () =>
    Effect.gen(function*() {
      const { seen, state, stream } = yield* wrap({ writeMillis: 1000 })
      const calls: Array<string> = []
      stream.write("one", () => calls.push("one"))
      stream.write("two", () => calls.push("two"))
      stream.write("three", () => calls.push("three"))
      yield* settle
      expect(state.written).toEqual([])
      expect(calls).toEqual([])
      yield* TestClock.adjust("1 second")
      yield* until(() => calls.length === 1)
      expect(state.written).toEqual(["one"])
      // what was written meanwhile goes on as one batch
      yield* TestClock.adjust("1 second")
      yield* until(() => calls.length === 3)
      expect(state.written).toEqual(["one", "twothree"])
      expect(seen.errors).toEqual([])
    }))

  it.effect("stops pulling while the consumer is paused, and pulls again when it reads", () =>
    Effect.gen(function*() {
      const { send, seen, state, stream } = yield* wrap({}, 4)
      for (let i = 0; i < 50; i++) send([`${i % 10}`.repeat(3)])
      stream.pause()
      yield* settle
      const pulled = state.pulls
      // the stream's small buffer fills and the pump stops: most is still in the socket
      expect(state.queued.length).toBeGreaterThan(40)
      yield* settle
      yield* settle
      expect(state.pulls).toBe(pulled)
      expect(seen.chunks).toEqual([])
      stream.resume()
      yield* until(() => state.queued.length === 0 && seen.chunks.length === 50)
      expect(seen.text()).toBe(Array.from({ length: 50 }, (_, i) => `${i % 10}`.repeat(3)).join(""))
    }))

  it.effect("end() releases the writer only: a half-close, after which the input still comes", () =>
    Effect.gen(function*() {
      const { send, seen, state, stream } = yield* wrap()
      stream.end("last words")
      yield* until(() => seen.events.includes("finish"))
      expect(state.written).toEqual(["last words"])
      expect(state.released).toEqual(["writer"])
      send(["the answer"])
      send(closed(1000))
      yield* until(() => seen.events.includes("close"))
      expect(seen.text()).toBe("the answer")
      // both directions over: the stream closes by itself, and the reader is released before 'close'
      expect(seen.events).toEqual(["finish", "end", "close"])
      expect(state.released).toEqual(["writer", "reader"])
    }))

  it.effect("a failed read destroys the stream with an Error saying why, its code, and the socket error", () =>
    Effect.gen(function*() {
      const { send, seen, state } = yield* wrap()
      send(["partial"])
      const cause = resetBy("connection reset by peer")
      send(cause)
      yield* until(() => seen.events.includes("close"))
      expect(seen.text()).toBe("partial")
      expect(seen.errors).toHaveLength(1)
      expect(seen.errors[0].message).toBe("the socket's read failed: connection reset by peer")
      expect(seen.errors[0].code).toBe("ECONNRESET")
      expect(seen.errors[0].cause).toBe(cause)
      expect(state.released.toSorted()).toEqual(["reader", "writer"])
    }))

  it.effect("a close with another code than 1000 is a failure, not an end", () =>
    Effect.gen(function*() {
      const { send, seen } = yield* wrap()
      send(closed(1006))
      yield* until(() => seen.events.includes("close"))
      expect(seen.events).toEqual(["error", "close"])
      expect(seen.errors[0].message).toBe("the socket's read failed: closed with code 1006")
    }))

  it.effect("a failed write is the write's error, and destroys the stream as a socket's does", () =>
    Effect.gen(function*() {
      const cause = new Socket.SocketError({
        reason: new Socket.SocketWriteError({ cause: Object.assign(new Error("broken pipe"), { code: "EPIPE" }) })
      })
      const { seen, stream } = yield* wrap({ writeError: cause })
      let called: Error | null | undefined = undefined
      stream.write("x", (error) => {
        called = error
      })
      yield* until(() => seen.events.includes("close"))
      expect((called as Error | undefined)?.message).toBe("the socket's write failed: broken pipe")
      expect(seen.errors.map((e) => e.code)).toEqual(["EPIPE"])
      expect(seen.errors[0].cause).toBe(cause)
    }))

  it.effect("a socket that does not open destroys the stream with an Error whose cause is the socket error", () =>
    Effect.gen(function*() {
      const cause = new Socket.SocketError({
        reason: new Socket.SocketOpenError({ kind: "Unknown", cause: new Error("connect ECONNREFUSED") })
      })
      const { seen, state } = yield* wrap({ openError: cause })
      yield* until(() => seen.events.includes("close"))
      expect(seen.errors).toHaveLength(1)
      expect(seen.errors[0].message).toBe("the socket did not open: connect ECONNREFUSED")
      expect(seen.errors[0].cause).toBe(cause)
      expect(state.released).toEqual([])
    }))

  it.effect("opens with the context's services (the test clock here), and writes before it opened go after", () =>
    Effect.gen(function*() {
      const { send, seen, state, stream } = yield* wrap({ openMillis: 5000 })
      let called = false
      stream.write("early", () => {
        called = true
      })
      send(["hi"])
      yield* settle
      expect(state.pulls).toBe(0)
      expect(called).toBe(false)
      yield* TestClock.adjust("5 seconds")
      yield* until(() => called && seen.text() === "hi")
      expect(state.written).toEqual(["early"])
    }))

  it.effect("destroy() interrupts the pull and the write under way, and releases reader and writer before 'close'", () =>
    Effect.gen(function*() {
      const { seen, state, stream } = yield* wrap({ writeMillis: 1000 })
      let called: Error | null | undefined = undefined
      stream.write("never", (error) => {
        called = error
      })
      yield* until(() => state.pulls === 1)
      stream.destroy()
      yield* until(() => seen.events.includes("close"))
      expect(state.interruptedPulls).toBe(1)
      expect(state.interruptedWrites).toBe(1)
      expect(state.written).toEqual([])
      expect(state.released).toEqual(["writer", "reader"])
      expect((called as NodeJS.ErrnoException | undefined)?.code).toBe("ERR_STREAM_DESTROYED")
      expect(seen.errors).toEqual([])
      // nothing is left to wake: time passing does nothing more
      yield* TestClock.adjust("1 minute")
      yield* settle
      expect(state.written).toEqual([])
      expect(seen.events).toEqual(["close"])
    }))

  it.effect("destroy() while the socket opens interrupts the opening", () =>
    Effect.gen(function*() {
      const { seen, state, stream } = yield* wrap({ openMillis: 5000 })
      stream.destroy(new Error("gave up"))
      yield* until(() => seen.events.includes("close"))
      expect(seen.errors.map((e) => e.message)).toEqual(["gave up"])
      yield* TestClock.adjust("5 seconds")
      yield* settle
      expect(state.pulls).toBe(0)
      expect(state.released).toEqual([])
    }))

  it.effect("over NodeSocket.fromDuplex on an in-memory pair: both ways, half-closes, and a clean close", () =>
    Effect.gen(function*() {
      const context = yield* Effect.context<never>()
      const [near, far] = duplexPair({ split: (data) => [data], delayMillis: 0, capacity: 1024, context })
      const socket = yield* NodeSocket.fromDuplex(Effect.succeed(near))
      const stream = socketDuplex(socket, context)
      const seen = record(stream)
      const atFar = record(far)
      far.write("ping")
      yield* until(() => seen.text() === "ping")
      stream.write("pong")
      yield* until(() => atFar.text() === "pong")
      stream.end()
      yield* until(() => atFar.events.includes("end"))
      far.end("bye")
      yield* until(() => seen.events.includes("close") && atFar.events.includes("close"))
      expect(seen.text()).toBe("pingbye")
      expect(seen.errors.concat(atFar.errors)).toEqual([])
      expect(near.closed && far.closed).toBe(true)
    }))

  it.live("over NodeSocket.makeNet: a TCP echo, to the server's end", () =>
    Effect.gen(function*() {
      const server = Net.createServer({ allowHalfOpen: true }, (connection) => {
        connection.pipe(connection)
      })
      yield* Effect.addFinalizer(() => Effect.sync(() => server.close()))
      yield* Effect.callback<void>((resume) => {
        server.listen(0, "127.0.0.1", () => resume(Effect.void))
      })
      const { port } = server.address() as Net.AddressInfo
      const socket = yield* NodeSocket.makeNet({ host: "127.0.0.1", port })
      const stream = socketDuplex(socket, yield* Effect.context<never>())
      const seen = record(stream)
      const big = Buffer.alloc(256 * 1024, 0x61)
      stream.write("echo me ")
      stream.end(big)
      yield* Effect.callback<void>((resume) => {
        stream.on("close", () => resume(Effect.void))
      })
      expect(seen.errors).toEqual([])
      expect(seen.events).toEqual(["finish", "end", "close"])
      expect(Buffer.concat(seen.chunks).equals(Buffer.concat([Buffer.from("echo me "), big]))).toBe(true)
    }))
})
