import { assert, describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Layer, Metric, Option, Ref, Scope, Stream, Tracer } from "effect"
import { TestClock } from "effect/testing"
import * as NodeStream from "node:stream"
import * as AsyncChat from "../src/AsyncChat.ts"
import * as Chat from "../src/Chat.ts"
import * as ChatClient from "../src/ChatClient.ts"
import * as ChatError from "../src/ChatError.ts"
import * as ChatMetrics from "../src/ChatMetrics.ts"
import * as ChatServer from "../src/ChatServer.ts"
import * as Framing from "../src/Framing.ts"
import * as MemoryTransport from "../src/MemoryTransport.ts"
import * as Producer from "../src/Producer.ts"
import * as Protocol from "../src/Protocol.ts"
import * as Terminator from "../src/Terminator.ts"
import { captureLogs, text } from "./helpers.ts"
import { connectLines, Echo, memory, readAll, readLines, settle } from "./memory-helpers.ts"
import { memoryPeer } from "./transport-helpers.ts"

describe("ChatServer over the in-memory transport", () => {
  for (const chunking of ["whole", 1, { random: 7 }] as const) {
    it.effect(`echoes lines with ${JSON.stringify(chunking)} chunking`, () =>
      Effect.gen(function*() {
        yield* ChatServer.make(Echo)
        const client = yield* connectLines
        yield* client.chat.push("hello\nI'm not dead yet!\n", "", "third\n")
        expect(yield* readLines(client, 3)).toEqual(["hello", "I'm not dead yet!", "third"])
      }).pipe(Effect.provide(memory({ chunking }))))
  }

  it.effect("keeps strict FIFO order across push and pushStream", () =>
    Effect.gen(function*() {
      const Mixed = Protocol.make(Terminator.lf, (lines) =>
        Stream.runForEach(lines, () =>
          Effect.gen(function*() {
            const chat = yield* Chat.Chat
            yield* chat.push("a")
            yield* chat.pushStream(Producer.simple("bcdef", 2))
            yield* chat.push("g")
            // a producer that yields to the scheduler between pieces: later pushes still wait for it
            yield* chat.pushStream(
              Stream.make("h", "i", "j").pipe(
                Stream.mapEffect((s) => Effect.as(Effect.yieldNow, new TextEncoder().encode(s)))
              )
            )
            yield* chat.push("k", "\n")
          })))
      yield* ChatServer.make(Mixed)
      const client = yield* connectLines
      yield* client.chat.push("go\ngo\n")
      expect(yield* readLines(client, 2)).toEqual(["abcdefghijk", "abcdefghijk"])
    }).pipe(Effect.provide(memory({ chunking: { random: 3 } }))))

  it.effect("closeWhenDone delivers everything queued before it, then closes", () =>
    Effect.gen(function*() {
      const big = "x".repeat(200_000)
      const Goodbye = Protocol.make(Terminator.lf, (lines) =>
        Stream.runForEach(lines, () =>
          Effect.gen(function*() {
            yield* Chat.push(big, "\n", "bye\n")
            yield* Chat.closeWhenDone
            yield* Chat.push("never sent\n")
          })))
      yield* ChatServer.make(Goodbye)
      const client = yield* connectLines
      yield* client.chat.push("hi\n")
      expect(yield* readAll(client)).toBe(`${big}\nbye\n`)
    }).pipe(Effect.provide(memory({ capacity: 4096 }))))

  it.effect("flushes queued output when the handler returns, then closes", () =>
    Effect.gen(function*() {
      const Once = Protocol.make(Terminator.lf, (lines) =>
        Stream.runHead(lines).pipe(Effect.andThen((line) =>
          Chat.push(`one: ${
            Option.map(line, (l) => text(l.bytes)).pipe(Option.getOrElse(() => "?"))
          }\n`)
        )))
      yield* ChatServer.make(Once)
      const client = yield* connectLines
      yield* client.chat.push("first\nsecond\n")
      expect(yield* readAll(client)).toBe("one: first\n")
    }).pipe(Effect.provide(memory())))

  it.effect("answers after the client ends its write side (half-close)", () =>
    Effect.gen(function*() {
      const CountThenAnswer = Protocol.make(Terminator.lf, (lines) =>
        Effect.flatMap(Stream.runCount(lines), (n) => Chat.push(`got ${n} lines\n`)))
      yield* ChatServer.make(CountThenAnswer)
      const peer = yield* memoryPeer()
      peer.socket.end("a\nb\nc") // our FIN after the bytes
      yield* peer.until("the server's end", (p) =>
        p.ended)
      expect(peer.text).toBe("got 3 lines\n")
    }).pipe(Effect.provide(memory({ chunking: 2 }))))

  it.effect("discardBuffers drops queued output and the input not yet framed", () =>
    Effect.gen(function*() {
      const Discarding = AsyncChat.make({
        terminator: Terminator.lf,
        foundTerminator: (frame) =>
          Effect.gen(function*() {
            const chat = yield* Chat.Chat
            if (text(frame.bytes) === "DISCARD") {
              // fill the transport so the writer is stuck, then queue what discardBuffers must drop
              yield* chat.push("f".repeat(63), "\n")
              for (let i = 0; i < 20; i++) yield* Effect.yieldNow
              yield* chat.push("queued but dropped\n")
              yield* AsyncChat.discardBuffers
              return yield* chat.push("discarded\n")
            }
            yield* chat.push(`line ${text(frame.bytes)}\n`)
          })
      })
      yield* ChatServer.make(Discarding)
      const client = yield* connectLines
      // "partial" arrives in the same chunk as DISCARD: it is input not yet framed, so it is dropped
      yield* client.chat.push("DISCARD\npartial")
      expect(yield* readLines(client, 2)).toEqual(["f".repeat(63), "discarded"])
      yield* client.chat.push("next\n")
      expect(yield* readLines(client, 1)).toEqual(["line next"])
    }).pipe(Effect.provide(memory({ capacity: 64 }))))

  it.effect("suspends push while a client reads nothing, keeping the output queue bounded", () =>
    Effect.gen(function*() {
      const pushed = yield* Ref.make(0)
      const Flood = Protocol.make(
        Terminator.lf,
        (lines) =>
          Stream.runForEach(lines, () =>
            Effect.forEach(Array.from({ length: 1024 }), () =>
              Effect.andThen(
                Chat.push("y".repeat(1023) + "\n"),
                Ref.update(pushed, (n) => n + 1024)
              ), { discard: true }))
      )
      yield* ChatServer.make(Flood, { highWaterMark: 16 * 1024, lowWaterMark: 8 * 1024 })
      const client = yield* connectLines
      yield* client.chat.push("go\n")
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow
      const stalled = yield* Ref.get(pushed)
      // bounded, as over a socket: the queue's high-water mark and one push, the stream's own write buffer (Node's
      // high-water mark, and the batch that crossed it), the window in flight, and the one read the client's
      // reader may hold ahead of its consumer
      const streamBuffer = NodeStream.getDefaultHighWaterMark(false)
      expect(stalled).toBeLessThanOrEqual(16 * 1024 + 1024 + streamBuffer + 16 * 1024 + 4096 + 4096)
      for (let i = 0; i < 50; i++) yield* Effect.yieldNow
      expect(yield* Ref.get(pushed)).toBe(stalled)
      // once the client reads, everything arrives
      const lines = yield* readLines(client, 1024)
      expect(lines.length).toBe(1024)
      expect(yield* Ref.get(pushed)).toBe(1024 * 1024)
    }).pipe(Effect.provide(memory({ capacity: 4096 }))))

  it.effect("coalesces many pushes into few transport writes", () =>
    Effect.gen(function*() {
      const Burst = Protocol.make(Terminator.lf, (lines) =>
        Stream.runForEach(lines, () =>
          Effect.forEach(
            Array.from({ length: 1000 }, (_, i) => i),
            (i) => Chat.push(`line ${i}\n`),
            { discard: true }
          )))
      yield* ChatServer.make(Burst)
      const peer = yield* memoryPeer()
      yield* peer.write("go\n")
      yield* peer.until("8890 bytes", (p) => p.bytes >= 8890)
      expect(peer.bytes).toBe(8890)
      // whole-chunking memory transport: one piece per transport write
      expect(peer.pieces.length).toBeLessThan(10)
    }).pipe(Effect.provide(memory())))
})

/** The server closed `client`'s connection: its input ends with nothing more, and the server counts it no more. */
const closedByServer = (server: ChatServer.ChatServerShape, client: ChatClient.Client<Framing.Frame>) =>
  Effect.gen(function*() {
    expect(yield* readAll(client)).toBe("")
    yield* settle
    expect(yield* server.count).toBe(0)
  })

describe("ChatServer supervision", () => {
  const Fragile = Protocol.make(Terminator.lf, (lines) =>
    Stream.runForEach(lines, (line) => {
      switch (text(line.bytes)) {
        case "fail":
          return Effect.fail("a typed protocol error")
        case "die":
          return Effect.die(new Error("a defect"))
        case "throw":
          throw new Error("a synchronous throw inside the handler")
        default:
          return Chat.push(line.bytes, "\n")
      }
    }))

  it.effect("a failing handler closes only its own connection among 50 healthy ones", () =>
    Effect.gen(function*() {
      const server = yield* ChatServer.make(Fragile)
      const healthy = yield* Effect.forEach(Array.from({ length: 50 }), () => connectLines, {
        concurrency: "unbounded"
      })
      const doomed = yield* Effect.forEach(["fail", "die", "throw"], () => connectLines)
      expect(yield* server.count).toBe(53)
      yield* Effect.forEach(doomed, (client, i) => client.chat.push(`ok\n${["fail", "die", "throw"][i]}\nlost\n`))
      for (const client of doomed) expect(yield* readAll(client)).toBe("ok\n")
      yield* Effect.forEach(healthy, (client, i) =>
        Effect.gen(function*() {
          yield* client.chat.push(`hello ${i}\n`, `again ${i}\n`)
          expect(yield* readLines(client, 2)).toEqual([`hello ${i}`, `again ${i}`])
        }), { concurrency: "unbounded" })
      expect(yield* server.count).toBe(50)
    }).pipe(Effect.provide(memory({ chunking: { random: 11 } }))))

  // Regression: with the handler run in the connection's own fiber, a value that is not an effect killed that
  // fiber outright (Effect's run loop skips the stack then): no finalizer ran, and the connection leaked.
  it.effect("a handler that yields a value that is not an effect (a JavaScript caller's bug) closes its connection", () =>
    Effect.gen(function*() {
      const Broken = Protocol.make(
        Terminator.lf,
        (lines) => Effect.flatMap(Stream.runHead(lines), () => undefined as unknown as Effect.Effect<void>)
      )
      const server = yield* ChatServer.make(Broken)
      const client = yield* connectLines
      yield* client.chat.push("x\n")
      yield* closedByServer(server, client)
    }).pipe(Effect.provide(memory())))

  // Regression: with the handler run in the connection's own fiber, close only interrupted it, which an
  // uninterruptible region defers: the connection stayed open.
  it.effect("close ends a connection whose handler is in an uninterruptible region", () =>
    Effect.gen(function*() {
      const Careful = Protocol.make(Terminator.lf, (lines) =>
        Effect.uninterruptible(Stream.runForEach(lines, (line) => Chat.push(line.bytes, "\n"))))
      const server = yield* ChatServer.make(Careful)
      const client = yield* connectLines
      yield* client.chat.push("a\n")
      expect(yield* readLines(client, 1)).toEqual(["a"])
      yield* server.closeAll // what a broadcast does to a slow consumer
      yield* closedByServer(server, client)
    }).pipe(Effect.provide(memory())))

  it.effect("a handler still running when its connection closes is interrupted, before what it acquired is released", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const record = (event: string) => Effect.sync(() => void events.push(event))
      // the output's end decides the connection's outcome while the handler goes on
      const Lingers = Protocol.make(
        Terminator.lf,
        () =>
          Effect.acquireRelease(record("acquired"), () => record("released")).pipe(
            Effect.andThen(Chat.closeWhenDone),
            Effect.andThen(Effect.never),
            Effect.onInterrupt(() => record("handler interrupted"))
          )
      )
      const server = yield* ChatServer.make(Lingers)
      const client = yield* connectLines
      yield* closedByServer(server, client)
      expect(events).toEqual(["acquired", "handler interrupted", "released"])
    }).pipe(Effect.provide(memory())))

  it.effect("a producer still running when the server closes is finalized before the server's scope is closed", () =>
    Effect.gen(function*() {
      const events: Array<string> = []
      const Endless = Protocol.make(Terminator.lf, () =>
        Effect.andThen(
          Chat.pushStream(
            Stream.concat(Stream.make(new TextEncoder().encode("A\n")), Stream.never).pipe(
              Stream.ensuring(
                Effect.andThen(Effect.sleep("50 millis"), Effect.sync(() => void events.push("producer finalized")))
              )
            )
          ),
          Effect.never
        ))
      const scope = yield* Scope.make()
      yield* ChatServer.make(Endless, { shutdownTimeout: "10 millis" }).pipe(Scope.provide(scope))
      const client = yield* connectLines
      expect(yield* readLines(client, 1)).toEqual(["A"])
      yield* Effect.andThen(Scope.close(scope, Exit.void), Effect.sync(() => void events.push("server closed")))
      expect(events).toEqual(["producer finalized", "server closed"])
    }).pipe(Effect.provide(memory()), TestClock.withLive))

  it.effect("logs a failure with the connection's id, peer and server, and counts it by reason", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const before = (yield* Metric.value(Metric.withAttributes(ChatMetrics.errors, { reason: "HandlerFailed" }))).count
      yield* Effect.gen(function*() {
        yield* ChatServer.make(Fragile)
        const client = yield* connectLines
        yield* client.chat.push("fail\n")
        yield* readAll(client)
      }).pipe(Effect.scoped, Effect.annotateLogs({ app: "test" }), Effect.provide(logs.layer))
      const line = logs.find("connection closed by HandlerFailed")
      assert(line !== undefined, `no failure log among ${logs.messages()}`)
      expect(line.level).toBe("Warn")
      expect(line.annotations).toMatchObject({
        connection: expect.any(Number),
        peer: "memory:client-1",
        server: expect.any(String),
        app: "test" // the caller's own annotations are kept
      })
      const after = (yield* Metric.value(Metric.withAttributes(ChatMetrics.errors, { reason: "HandlerFailed" }))).count
      expect(after - before).toBe(1)
    }).pipe(Effect.provide(memory())))
})

/** How a server with `options` logs a connection that `client` makes end, and what it counts. */
const endingOf = (
  options: ChatServer.Options,
  client: (client: ChatClient.Client<Framing.Frame>) => Effect.Effect<void, ChatError.ChatError>,
  reason: string
) =>
  Effect.gen(function*() {
    const logs = captureLogs()
    const errors = Metric.withAttributes(ChatMetrics.errors, { reason })
    const before = (yield* Metric.value(errors)).count
    yield* Effect.gen(function*() {
      yield* ChatServer.make(Echo, options)
      const connection = yield* connectLines
      const reply = yield* Effect.forkChild(readAll(connection))
      yield* client(connection)
      yield* Fiber.join(reply)
    }).pipe(Effect.scoped, Effect.provide([memory(), logs.layer]))
    const line = logs.find(`connection closed by ${reason}`)
    return { level: line?.level, counted: (yield* Metric.value(errors)).count - before, logs }
  })
const goQuiet = () => TestClock.adjust("10 seconds")

describe("ChatServer limits under TestClock", () => {
  // Answers the timeout it hit, then closes: a protocol may catch a ChatError by reason.
  const Patient = Protocol.make(
    Terminator.lf,
    (lines) =>
      Stream.runForEach(lines, (line) => Chat.push(line.bytes, "\n")).pipe(
        Effect.catchReason("ChatError", "IdleTimeout", () => Chat.push("idle\n")),
        Effect.catchReason("ChatError", "FrameTimeout", () => Chat.push("slow\n"))
      )
  )

  it.effect("closes a connection that sends nothing for idleTimeout", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Patient, { idleTimeout: "10 seconds" })
      const client = yield* connectLines
      const reply = yield* Effect.forkChild(readAll(client))
      yield* TestClock.adjust("9 seconds")
      yield* client.chat.push("still here\n")
      yield* TestClock.adjust("9 seconds")
      expect(reply.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(reply)).toBe("still here\nidle\n")
    }).pipe(Effect.provide(memory())))

  it.effect("logs a routine ending (an idle timeout) at Debug by default, and counts it by reason", () =>
    Effect.gen(function*() {
      const ending = yield* endingOf({ idleTimeout: "10 seconds" }, goQuiet, "IdleTimeout")
      expect(ending.level, ending.logs.messages()).toBe("Debug")
      expect(ending.logs.find("connection closed by IdleTimeout")?.message).toBe(
        "connection closed by IdleTimeout: No input for 10s"
      )
      expect(ending.counted).toBe(1)
    }))

  it.effect("routineLogLevel chooses the level of routine endings: Info, or None for no line at all", () =>
    Effect.gen(function*() {
      const info = yield* endingOf({ idleTimeout: "10 seconds", routineLogLevel: "Info" }, goQuiet, "IdleTimeout")
      expect(info.level, info.logs.messages()).toBe("Info")
      const none = yield* endingOf({ idleTimeout: "10 seconds", routineLogLevel: "None" }, goQuiet, "IdleTimeout")
      expect(none.level, none.logs.messages()).toBeUndefined()
      expect([info.counted, none.counted]).toEqual([1, 1]) // counted whatever the level
    }))

  it.effect("an over-long frame is worth a warning whatever routineLogLevel says; a frame timeout is routine", () =>
    Effect.gen(function*() {
      const tooLong = yield* endingOf(
        { maxFrameLength: 8, routineLogLevel: "Trace" },
        (client) => client.chat.push("far too long a line\n"),
        "FrameTooLong"
      )
      expect(tooLong.level, tooLong.logs.messages()).toBe("Warn")
      expect(tooLong.counted).toBe(1)
      const slow = yield* endingOf(
        { frameTimeout: "5 seconds" },
        (client) => Effect.andThen(client.chat.push("half a li"), TestClock.adjust("5 seconds")),
        "FrameTimeout"
      )
      expect(slow.level, slow.logs.messages()).toBe("Debug")
    }))

  it.effect("times out many connections, watched together, each at its own deadline and only it", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Patient, { idleTimeout: "60 seconds", frameTimeout: "4 seconds" })
      // 30 connections opened a second apart (connection i at i s): the server watches them in one heap
      const clients: Array<ChatClient.Client<Framing.Frame>> = []
      const replies: Array<Fiber.Fiber<string, ChatError.ChatError>> = []
      for (let i = 0; i < 30; i++) {
        const client = yield* connectLines
        clients.push(client)
        replies.push(yield* Effect.forkChild(readAll(client)))
        yield* TestClock.adjust("1 second")
      }
      const open = (from: number, to: number) =>
        replies.slice(from, to).every((reply) => reply.pollUnsafe() === undefined)
      const over = (from: number, to: number) =>
        replies.slice(from, to).every((reply) => reply.pollUnsafe() !== undefined)
      // at 30 s the newest starts a frame: its frame deadline (34 s) comes before every idle one (60 s on)
      yield* clients[29].chat.push("partial")
      yield* TestClock.adjust("4 seconds")
      expect(yield* Fiber.join(replies[29])).toBe("slow\n")
      expect(open(0, 29)).toBe(true)
      // at 34 s connection 25 talks: its idle deadline moves from 85 s to 94 s
      yield* clients[25].chat.push("hi\n")
      yield* TestClock.adjust("26 seconds") // 60 s
      expect(yield* Fiber.join(replies[0])).toBe("idle\n")
      expect(open(1, 29)).toBe(true)
      yield* TestClock.adjust("29 seconds") // 89 s: 1..24 and 26..28 are over their 60 s; 25 talked at 34 s
      yield* settle
      expect(over(1, 25) && over(26, 29)).toBe(true)
      expect(replies[25].pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("5 seconds") // 94 s
      expect(yield* Fiber.join(replies[25])).toBe("hi\nidle\n")
    }).pipe(Effect.provide(memory())))

  it.effect("closes a connection whose frame trickles in slower than frameTimeout (slowloris)", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Patient, { idleTimeout: "10 seconds", frameTimeout: "30 seconds" })
      const client = yield* connectLines
      const reply = yield* Effect.forkChild(readAll(client))
      yield* client.chat.push("quick\n")
      // one byte every 5 seconds never trips the idle timeout, but the frame never completes in time
      for (let i = 0; i < 5; i++) {
        yield* client.chat.push("x")
        yield* TestClock.adjust("5 seconds")
      }
      expect(reply.pollUnsafe()).toBeUndefined()
      yield* client.chat.push("x")
      yield* TestClock.adjust("5 seconds")
      expect(yield* Fiber.join(reply)).toBe("quick\nslow\n")
    }).pipe(Effect.provide(memory({ chunking: 1 }))))

  it.effect("gives each frame its own frameTimeout, from its first byte, however many came before it", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Patient, { idleTimeout: Duration.infinity, frameTimeout: "30 seconds" })
      const client = yield* connectLines
      const reply = yield* Effect.forkChild(readAll(client))
      // a frame started at 0 s and completed at 20 s, the next started at 25 s: its deadline is 55 s, not 30 s
      yield* client.chat.push("a")
      yield* TestClock.adjust("20 seconds")
      yield* client.chat.push("1\n")
      yield* TestClock.adjust("5 seconds")
      yield* client.chat.push("b")
      yield* TestClock.adjust("29 seconds")
      expect(reply.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(reply)).toBe("a1\nslow\n")
    }).pipe(Effect.provide(memory())))

  it.effect("a frame started by the read that completed the one before gets its own deadline", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Patient, { idleTimeout: Duration.infinity, frameTimeout: "30 seconds" })
      const client = yield* connectLines
      const reply = yield* Effect.forkChild(readAll(client))
      // every frame completes 10 s after its first byte, but every read ends in the middle of the next one
      yield* client.chat.push("a")
      for (let i = 0; i < 6; i++) {
        yield* TestClock.adjust("10 seconds")
        yield* client.chat.push(`${i}\nb`)
      }
      yield* TestClock.adjust("29 seconds")
      expect(reply.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(reply)).toBe("a0\nb1\nb2\nb3\nb4\nb5\nslow\n")
    }).pipe(Effect.provide(memory())))

  it.effect("a reader that catches a timeout and reads again is timed out again", () =>
    Effect.gen(function*() {
      const Silent = Protocol.make(Terminator.lf, (lines) => Stream.runDrain(lines))
      yield* ChatServer.make(Silent, { idleTimeout: Duration.infinity })
      const connector = yield* MemoryTransport.connector
      const client = yield* ChatClient.connect(connector, { terminator: Terminator.lf, idleTimeout: "10 seconds" })
      for (let i = 0; i < 3; i++) {
        const read = yield* Effect.forkChild(Effect.flip(Stream.runHead(client.input)))
        yield* TestClock.adjust("9 seconds")
        expect(read.pollUnsafe()).toBeUndefined()
        yield* TestClock.adjust("1 second")
        const error = yield* Fiber.join(read)
        assert(error.reason._tag === "IdleTimeout")
      }
    }).pipe(Effect.provide(memory())))

  it.effect("closes a connection whose peer takes none of its output for writeTimeout", () =>
    Effect.gen(function*() {
      const timedOut = Metric.withAttributes(ChatMetrics.errors, { reason: "WriteTimeout" })
      const before = (yield* Metric.value(timedOut)).count
      const Flood = Protocol.make(Terminator.lf, () => Effect.forever(Chat.push("x".repeat(1000))))
      const server = yield* ChatServer.make(Flood, { writeTimeout: "10 seconds" })
      const client = yield* connectLines
      yield* client.chat.push("go\n")
      // the client reads nothing: 4 KiB in flight, then the server's write waits
      yield* settle
      expect(yield* server.count).toBe(1)
      yield* TestClock.adjust("9 seconds")
      expect(yield* server.count).toBe(1)
      yield* TestClock.adjust("1 second")
      yield* settle
      expect(yield* server.count).toBe(0)
      expect((yield* Metric.value(timedOut)).count - before).toBe(1)
    }).pipe(Effect.provide(memory({ capacity: 4096 }))))

  it.effect("AsyncChat.make: whole lines received together leave no frame in progress to time out", () =>
    Effect.gen(function*() {
      const Lines = AsyncChat.make({ terminator: Terminator.lf, foundTerminator: (f) => Chat.push(f.bytes, "\n") })
      yield* ChatServer.make(Lines, { idleTimeout: Duration.infinity, frameTimeout: "30 seconds" })
      const client = yield* connectLines
      const reply = yield* Effect.forkChild(readLines(client, 3))
      yield* client.chat.push("a\nb\n")
      yield* TestClock.adjust("31 seconds")
      yield* client.chat.push("c\n")
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(reply)).toEqual(["a", "b", "c"])
    }).pipe(Effect.provide(memory())))

  it.effect("a partial frame dropped by discardBuffers is not timed out as a frame", () =>
    Effect.gen(function*() {
      const Drop = AsyncChat.make({
        terminator: Terminator.lf,
        foundTerminator: (line) => Effect.andThen(AsyncChat.discardBuffers, Chat.push(line.bytes, "\n"))
      })
      yield* ChatServer.make(Drop, { idleTimeout: Duration.infinity, frameTimeout: "30 seconds" })
      const client = yield* connectLines
      const reply = yield* Effect.forkChild(readLines(client, 2))
      yield* client.chat.push("a\npar")
      yield* TestClock.adjust("31 seconds")
      yield* client.chat.push("b\n")
      yield* TestClock.adjust("1 second")
      expect(yield* Fiber.join(reply)).toEqual(["a", "b"])
    }).pipe(Effect.provide(memory())))

  it.effect("a frame deadline missed while the reader was busy fails its next wait, and the one after in time", () =>
    Effect.gen(function*() {
      const Partial = AsyncChat.make({
        terminator: Terminator.lf,
        onConnect: () => Chat.push("x\npar"),
        foundTerminator: () => Effect.void
      })
      yield* ChatServer.make(Partial, { idleTimeout: Duration.infinity })
      const connector = yield* MemoryTransport.connector
      const client = yield* ChatClient.connect(connector, {
        terminator: Terminator.lf,
        idleTimeout: Duration.infinity,
        frameTimeout: "10 seconds"
      })
      assert((yield* Stream.runHead(client.input))._tag === "Some")
      yield* TestClock.adjust("11 seconds") // busy: "par" misses its deadline
      const first = yield* Effect.flip(Stream.runHead(client.input))
      assert(first.reason._tag === "FrameTimeout")
      // caught, and read again: a fresh period, then a timeout again
      const read = yield* Effect.forkChild(Effect.flip(Stream.runHead(client.input)))
      yield* TestClock.adjust("9 seconds")
      expect(read.pollUnsafe()).toBeUndefined()
      yield* TestClock.adjust("1 second")
      assert((yield* Fiber.join(read)).reason._tag === "FrameTimeout")
    }).pipe(Effect.provide(memory())))

  it.effect("turns timeouts off with Duration.infinity", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Patient, { idleTimeout: Duration.infinity, frameTimeout: Duration.infinity })
      const client = yield* connectLines
      yield* client.chat.push("par")
      yield* TestClock.adjust("1 day")
      yield* client.chat.push("tial\n")
      expect(yield* readLines(client, 1)).toEqual(["partial"])
    }).pipe(Effect.provide(memory())))

  it.effect("answers an over-long frame by reason and closes only that connection", () =>
    Effect.gen(function*() {
      const Strict = Protocol.make(Terminator.lf, (lines) =>
        Stream.runForEach(lines, (line) =>
          Chat.push(line.bytes, "\n")).pipe(
            Effect.catchReason("ChatError", "FrameTooLong", (reason) => Chat.push(`-ERR over ${reason.limit}\n`))
          ))
      const server = yield* ChatServer.make(Strict, { maxFrameLength: 8 })
      const bystander = yield* connectLines
      const offender = yield* connectLines
      yield* offender.chat.push("ok\nthis line is too long\n")
      expect(yield* readAll(offender)).toBe("ok\n-ERR over 8\n")
      yield* bystander.chat.push("fine\n")
      expect(yield* readLines(bystander, 1)).toEqual(["fine"])
      expect(yield* server.count).toBe(1)
    }).pipe(Effect.provide(memory({ chunking: 3 }))))

  it.effect("refuses connections beyond maxConnections with rejectMessage", () =>
    Effect.gen(function*() {
      const server = yield* ChatServer.make(Echo, { maxConnections: 2, rejectMessage: "busy\r\n" })
      const first = yield* connectLines
      yield* connectLines
      const third = yield* Effect.flatMap(MemoryTransport.connector, (connector) =>
        ChatClient.connect(connector, { terminator: Terminator.crlf }))
      expect(yield* readAll(third)).toBe("busy\n")
      expect(yield* server.count).toBe(2)
      const before = (yield* Metric.value(ChatMetrics.connectionsRejected)).count
      yield* first.chat.close
      yield* settle
      const fourth = yield* connectLines
      yield* fourth.chat.push("served\n")
      expect(yield* readLines(fourth, 1)).toEqual(["served"])
      expect((yield* Metric.value(ChatMetrics.connectionsRejected)).count).toBe(before)
    }).pipe(Effect.provide(memory())))
})

/** An echo that takes 2 seconds over each line, recording in `heard` the lines it answered. */
const slowEcho = (heard: Array<string>) =>
  Protocol.make(Terminator.lf, (lines) =>
    Stream.runForEach(lines, (line) =>
      Effect.andThen(
        Effect.sleep("2 seconds"),
        Effect.andThen(Effect.sync(() => heard.push(text(line.bytes))), Chat.push(line.bytes, "\n"))
      )))

describe("ChatServer: the pitfalls of the raw socket layer, made impossible", () => {
  it.effect("a handler that throws before reading closes its connection, and shutdown does not hang", () =>
    Effect.gen(function*() {
      const Throws = Protocol.make(Terminator.lf, (): Effect.Effect<void> => {
        throw new Error("thrown before the first read")
      })
      const scope = yield* Scope.make()
      yield* ChatServer.make(Throws).pipe(Scope.provide(scope))
      const client = yield* connectLines
      expect(yield* readAll(client)).toBe("")
      yield* settle
      // nothing is left open: the shutdown completes without waiting for its deadline
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      expect(closing.pollUnsafe()).toBeDefined()
    }).pipe(Effect.provide(memory())))

  it.effect("a handler gets the connection's scope: resources are released when the connection closes", () =>
    Effect.gen(function*() {
      const released = yield* Ref.make<Array<number>>([])
      const Scoped = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          const chat = yield* Chat.Chat
          // no Effect.scoped here: the connection's scope owns the resource
          yield* Effect.acquireRelease(Effect.void, () => Ref.update(released, (ids) => [...ids, chat.id]))
          yield* Stream.runForEach(lines, (line) => Chat.push(line.bytes, "\n"))
        }))
      yield* ChatServer.make(Scoped)
      const client = yield* connectLines
      yield* client.chat.push("a\n")
      expect(yield* readLines(client, 1)).toEqual(["a"])
      expect(yield* Ref.get(released)).toEqual([])
      yield* client.chat.close
      yield* settle
      expect(yield* Ref.get(released)).toEqual([1])
    }).pipe(Effect.provide(memory())))

  it.effect("graceful shutdown refuses new connections, answers the frames read, closes at a frame boundary", () =>
    Effect.gen(function*() {
      const frames: Array<string> = []
      const scope = yield* Scope.make()
      yield* ChatServer.make(slowEcho(frames), { shutdownTimeout: "1 hour" }).pipe(Scope.provide(scope))
      const busy = yield* connectLines
      const idle = yield* connectLines
      // three whole requests and the start of a fourth, read before the shutdown begins
      yield* busy.chat.push("one\ntwo\nthree\nfou")
      yield* settle
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      const refused = yield* Effect.flip(connectLines)
      expect(refused.reason._tag).toBe("ConnectFailed")
      expect(yield* readAll(idle)).toBe("") // an idle connection closes at once
      yield* busy.chat.push("r\nfive\n") // sent after the shutdown began: not read
      yield* TestClock.adjust("6 seconds")
      expect(yield* readAll(busy)).toBe("one\ntwo\nthree\n")
      yield* Fiber.join(closing) // long before the hour
      expect(frames).toEqual(["one", "two", "three"])
    }).pipe(Effect.provide(memory())))

  it.effect("with endInputOnShutdown false, a shutdown lets connections run until shutdownTimeout, then interrupts", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      yield* ChatServer.make(slowEcho([]), { shutdownTimeout: "10 seconds", endInputOnShutdown: false }).pipe(
        Scope.provide(scope)
      )
      const busy = yield* connectLines
      const idle = yield* connectLines
      yield* busy.chat.push("answer me\n")
      yield* settle
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* settle
      yield* TestClock.adjust("2 seconds")
      expect(yield* readLines(busy, 1)).toEqual(["answer me"])
      yield* busy.chat.push("and me\n")
      yield* TestClock.adjust("2 seconds")
      expect(yield* readLines(busy, 1)).toEqual(["and me"]) // its input is still read
      expect(closing.pollUnsafe()).toBeUndefined() // the idle connection is still open
      yield* TestClock.adjust("6 seconds")
      yield* Fiber.join(closing)
      expect(yield* readAll(idle)).toBe("")
    }).pipe(Effect.provide(memory())))

  it.effect("draining tells idle handlers that a graceful shutdown began, so they say goodbye at once", () =>
    Effect.gen(function*() {
      const Room = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          const server = yield* ChatServer.ChatServer
          yield* Effect.raceFirst(
            Stream.runForEach(lines, (line) => Chat.push(line.bytes, "\n")),
            Effect.andThen(server.draining, Chat.push("* server going down\n"))
          )
        }))
      const scope = yield* Scope.make()
      yield* ChatServer.make(Room, { shutdownTimeout: "1 hour" }).pipe(Scope.provide(scope))
      const client = yield* connectLines
      yield* client.chat.push("hi\n")
      expect(yield* readLines(client, 1)).toEqual(["hi"])
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      expect(yield* readAll(client)).toBe("* server going down\n")
      yield* Fiber.join(closing) // no clock advanced: nobody waited for the hour
    }).pipe(Effect.provide(memory())))

  it.effect("a server launched in a child fiber shuts down when that fiber is interrupted", () =>
    Effect.gen(function*() {
      const fiber = yield* ChatServer.layer(Echo, { shutdownTimeout: "1 second" }).pipe(
        Layer.launch,
        Effect.provide(memory()),
        Effect.forkChild
      )
      yield* settle
      yield* TestClock.adjust("1 second")
      const interrupting = yield* Effect.forkChild(Fiber.interrupt(fiber))
      yield* settle
      yield* TestClock.adjust("1 second")
      yield* Fiber.join(interrupting)
    }))
})

describe("ChatServer registry", () => {
  it.effect("counts, looks up, broadcasts to and closes the live connections", () =>
    Effect.gen(function*() {
      const Room = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          const server = yield* ChatServer.ChatServer
          const chat = yield* Chat.Chat
          yield* Stream.runForEach(
            lines,
            (line) => server.broadcast(`${chat.id}: ${text(line.bytes)}\n`, { except: chat.id })
          )
        }))
      const server = yield* ChatServer.make(Room)
      const clients = yield* Effect.forEach([1, 2, 3], () => connectLines)
      yield* settle
      expect(yield* server.count).toBe(3)
      expect((yield* server.connections).map((c) => c.id)).toEqual([1, 2, 3])
      const second = yield* server.get(2)
      expect(Option.map(second, (c) => Chat.formatAddress(c.remoteAddress))).toEqual(Option.some("memory:client-2"))
      expect(Option.isNone(yield* server.get(99))).toBe(true)
      yield* clients[0].chat.push("hello all\n")
      expect(yield* readLines(clients[1], 1)).toEqual(["1: hello all"])
      expect(yield* readLines(clients[2], 1)).toEqual(["1: hello all"])
      yield* server.broadcast("* server says bye\n")
      for (const client of clients) expect(yield* readLines(client, 1)).toEqual(["* server says bye"])
      yield* server.closeAll
      for (const client of clients) expect(yield* readAll(client)).toBe("")
      yield* settle
      expect(yield* server.count).toBe(0)
    }).pipe(Effect.provide(memory())))
})

describe("ChatServer read backpressure", () => {
  it.effect("reads no further ahead of the handler than one read: a stalled handler stops the peer's writer", () =>
    Effect.gen(function*() {
      const seen = yield* Ref.make(0)
      const Stalls = Protocol.make(
        Terminator.lf,
        (lines) => Stream.runForEach(lines, () => Effect.andThen(Ref.update(seen, (n) => n + 1), Effect.never))
      )
      // a handler stuck forever is interrupted at once when the test's scope closes
      yield* ChatServer.make(Stalls, { shutdownTimeout: 0 })
      const before = (yield* Metric.value(ChatMetrics.bytesIn)).count
      const client = yield* connectLines
      const line = "z".repeat(99) + "\n"
      const writing = yield* Effect.forkChild(
        Effect.forEach(Array.from({ length: 10_000 }), () => client.chat.push(line), { discard: true })
      )
      yield* settle
      expect(yield* Ref.get(seen)).toBe(1)
      // one read (at most one coalesced client write: its 64 KiB high-water mark plus a line), then no more
      const read = (yield* Metric.value(ChatMetrics.bytesIn)).count - before
      expect(read).toBeGreaterThan(0)
      expect(read).toBeLessThanOrEqual(64 * 1024 + 100)
      yield* settle
      expect((yield* Metric.value(ChatMetrics.bytesIn)).count - before).toBe(read)
      expect(writing.pollUnsafe()).toBeUndefined() // the client's pushes are suspended
    }).pipe(Effect.provide(memory({ capacity: 4096 }))))
})

/** A counter's current count. */
const value = (metric: Metric.Metric<number, { readonly count: number }>) =>
  Effect.map(Metric.value(metric), (state) => state.count)

/** A tracing backend that keeps every span it makes. */
const recordingTracer = () => {
  const spans: Array<Tracer.NativeSpan> = []
  const recording = Tracer.make({
    span: (options) => {
      const span = new Tracer.NativeSpan(options)
      spans.push(span)
      return span
    }
  })
  return { recording, spans }
}

describe("Observability", () => {
  it.effect("counts bytes, frames and connections", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo)
      const [bytesIn, bytesOut, frames, total] = yield* Effect.all([
        value(ChatMetrics.bytesIn),
        value(ChatMetrics.bytesOut),
        value(ChatMetrics.framesIn),
        value(ChatMetrics.connectionsTotal)
      ])
      const client = yield* connectLines
      yield* client.chat.push("hello\n")
      expect(yield* readLines(client, 1)).toEqual(["hello"])
      // traffic is added up and reported once per scheduler turn
      yield* Effect.yieldNow
      // both ends count: the client's 6 bytes out and the echo in, the server's the other way
      expect((yield* value(ChatMetrics.bytesIn)) - bytesIn).toBe(12)
      expect((yield* value(ChatMetrics.bytesOut)) - bytesOut).toBe(12)
      expect((yield* value(ChatMetrics.framesIn)) - frames).toBe(2)
      expect((yield* value(ChatMetrics.connectionsTotal)) - total).toBe(2)
      expect(yield* value(ChatMetrics.connectionsOpen)).toBeGreaterThanOrEqual(1)
    }).pipe(Effect.provide(memory())))

  /** A handler that answers with the name, id and peer of the span it runs in, or "none". */
  const SpanReporter = Protocol.make(Terminator.lf, (lines) =>
    Stream.runForEach(lines, () =>
      Effect.gen(function*() {
        const span = yield* Effect.option(Effect.currentSpan)
        yield* Chat.push(
          Option.match(span, {
            onNone: () => "none\n",
            onSome: (s) => `${s.name} ${s.attributes.get("connection.id")} ${s.attributes.get("net.peer")}\n`
          })
        )
      })))

  it.effect("runs each connection in a span with its id, peer and role when a tracer is installed", () => {
    const { recording, spans } = recordingTracer()
    return Effect.gen(function*() {
      yield* ChatServer.make(SpanReporter)
      // a client run with a protocol has its span too: it asks once, keeps the answer, and hangs up
      const replies: Array<string> = []
      const Ask = Protocol.make(Terminator.lf, (lines) =>
        Effect.andThen(
          Chat.push("?\n"),
          Stream.runForEach(Stream.take(lines, 1), (line) => Effect.sync(() => replies.push(text(line.bytes))))
        ))
      yield* ChatClient.run(yield* MemoryTransport.connector, Ask)
      expect(replies).toEqual(["effect-asynchat.connection 1 memory:client-1"])
      const server = spans.find((span) => span.kind === "server")
      const client = spans.find((span) => span.kind === "client")
      assert(server !== undefined && client !== undefined)
      expect(server.name).toBe("effect-asynchat.connection")
      expect(server.attributes.get("connection.role")).toBe("server")
      expect(client.attributes.get("connection.role")).toBe("client")
      expect(client.status._tag).toBe("Ended")
      yield* settle
      expect(server.status._tag).toBe("Ended") // the span covers the connection's whole life
    }).pipe(Effect.provide(memory()), Effect.withTracer(recording))
  })

  it.effect("a connection closed by its handler ends its span with success, not an interrupt", () => {
    const { recording, spans } = recordingTracer()
    const Closer = Protocol.make(
      Terminator.lf,
      (lines) => Stream.runForEach(lines, () => Effect.flatMap(Chat.Chat, (chat) => chat.close))
    )
    return Effect.gen(function*() {
      yield* ChatServer.make(Closer)
      const client = yield* connectLines
      yield* client.chat.push("bye\n")
      expect(yield* readAll(client)).toBe("")
      yield* settle
      const server = spans.find((span) => span.kind === "server")
      assert(server !== undefined && server.status._tag === "Ended")
      expect(Exit.isSuccess(server.status.exit)).toBe(true)
    }).pipe(Effect.provide(memory()), Effect.withTracer(recording))
  })

  it.effect("makes no span without a tracing backend: one would never be seen, and costs an idle connection memory", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(SpanReporter)
      const client = yield* connectLines
      yield* client.chat.push("?\n")
      expect(yield* readLines(client, 1)).toEqual(["none"])
    }).pipe(Effect.provide(memory())))
})

describe("Fan-out", () => {
  it.effect("offer queues without waiting up to outputLimit, then refuses", () =>
    Effect.gen(function*() {
      const results = yield* Ref.make<Array<boolean>>([])
      const Offers = Protocol.make(Terminator.lf, (lines) =>
        Stream.runForEach(lines, () =>
          Effect.gen(function*() {
            const chat = yield* Chat.Chat
            for (let i = 0; i < 6; i++) {
              const queued = yield* chat.offer("o".repeat(1023), "\n")
              yield* Ref.update(results, (r) => [...r, queued])
            }
          })))
      yield* ChatServer.make(Offers, { highWaterMark: 2048, lowWaterMark: 1024, outputLimit: 4096 })
      const peer = yield* memoryPeer({ silent: true }) // open, never reads
      yield* peer.write("go\n")
      yield* settle
      // four 1 KiB lines reach the 4 KiB limit (offer does not wait at the 2 KiB high-water mark); then no more
      expect(yield* Ref.get(results)).toEqual([true, true, true, true, false, false])
    }).pipe(Effect.provide(memory({ capacity: 1 }))))

  it.effect("broadcast closes a slow consumer instead of stalling the room", () =>
    Effect.gen(function*() {
      const Room = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          const server = yield* ChatServer.ChatServer
          const chat = yield* Chat.Chat
          yield* Stream.runForEach(lines, (line) => server.broadcast(`${text(line.bytes)}\n`, { except: chat.id }))
        }))
      const server = yield* ChatServer.make(Room, { highWaterMark: 4096, lowWaterMark: 1024, outputLimit: 64 * 1024 })
      const speaker = yield* connectLines
      const listener = yield* connectLines
      yield* memoryPeer({ silent: true }) // connected, never reads
      yield* settle
      expect(yield* server.count).toBe(3)
      const heard = yield* Effect.forkChild(readLines(listener, 2000))
      yield* Effect.forEach(Array.from({ length: 2000 }, (_, i) => i), (i) =>
        speaker.chat.push(`line ${i} ${"x".repeat(100)}\n`), {
        discard: true
      })
      const lines = yield* Fiber.join(heard)
      expect(lines.length).toBe(2000)
      expect(lines[1999]).toBe(`line 1999 ${"x".repeat(100)}`)
      yield* settle
      expect(yield* server.count).toBe(2) // the silent one was closed as a slow consumer
    }).pipe(Effect.provide(memory({ capacity: 1024 }))))
})

describe("Ending output and fan-out", () => {
  it.effect("offer after closeWhenDone queues nothing and says so; the goodbye still goes out", () =>
    Effect.gen(function*() {
      const offered = yield* Deferred.make<boolean>()
      const Bye = Protocol.make(Terminator.lf, () =>
        Effect.gen(function*() {
          const chat = yield* Chat.Chat
          yield* chat.push("bye\n")
          yield* chat.closeWhenDone
          yield* Deferred.succeed(offered, yield* chat.offer("late\n"))
        }))
      yield* ChatServer.make(Bye)
      const client = yield* connectLines
      yield* client.chat.push("go\n")
      expect(yield* readAll(client)).toBe("bye\n")
      expect(yield* Deferred.await(offered)).toBe(false)
    }).pipe(Effect.provide(memory())))

  it.effect("a broadcast skips a connection that is closing instead of closing it as a slow consumer", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const Leaving = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          const server = yield* ChatServer.ChatServer
          const chat = yield* Chat.Chat
          yield* Stream.runForEach(lines, (line) =>
            text(line.bytes) === "leave"
              // the whole output limit, which the peer does not take: the connection stays closing, its queue full
              ? Effect.andThen(chat.offer("goodbye ".repeat(2048), "\n"), chat.closeWhenDone)
              : server.broadcast(`${text(line.bytes)}\n`, { except: chat.id }))
        }))
      const server = yield* ChatServer.make(Leaving, { highWaterMark: 4096, outputLimit: 4096, shutdownTimeout: 0 })
        .pipe(
          Effect.provide(logs.layer)
        )
      const speaker = yield* connectLines
      const leaver = yield* memoryPeer({ silent: true })
      yield* leaver.write("leave\n")
      yield* settle
      yield* speaker.chat.push("hello\n")
      yield* settle
      expect(logs.find("slow consumer")).toBeUndefined()
      expect(yield* server.count).toBe(2)
    }).pipe(Effect.provide(memory({ capacity: 64 }))))
})

describe("Closing under pressure, over the in-memory transport", () => {
  it.live("a graceful shutdown reaches a handler waiting for the peer to take its output, not only at the timeout", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const Big = Protocol.forEach(Terminator.lf, () => Chat.push("b".repeat(60 * 1024), "\n"))
      const context = yield* Layer.build(MemoryTransport.layer({ capacity: 1024 }))
      const serverScope = yield* Scope.make()
      yield* ChatServer.make(Big, { shutdownTimeout: "4 seconds" }).pipe(
        Effect.provideContext(context),
        Effect.provide(logs.layer),
        Scope.provide(serverScope)
      )
      const peer = yield* memoryPeer({ silent: true }).pipe(Effect.provideContext(context))
      // two reads: the answer to the second is written as the handler is about to wait for input, and that write
      // waits for room, the peer reading nothing
      yield* peer.write("one\n")
      yield* Effect.sleep("50 millis")
      yield* peer.write("two\n")
      yield* Effect.sleep("100 millis")
      const started = Date.now()
      const closing = yield* Effect.forkChild(Scope.close(serverScope, Exit.void))
      yield* Effect.sleep("50 millis")
      peer.socket.on("data", (data: Buffer) => peer.received(data.length))
      yield* peer.until("the server's end", (p) => p.ended, "10 seconds")
      expect(Date.now() - started).toBeLessThan(2000)
      expect(peer.bytes).toBe(2 * (60 * 1024 + 1))
      yield* Fiber.join(closing)
      expect(logs.find("interrupting")).toBeUndefined()
    }))

  it.live("a peer that resets under the refusal message costs the server nothing", () =>
    Effect.gen(function*() {
      const context = yield* Layer.build(MemoryTransport.layer({ capacity: 16 }))
      const refusal = `${"busy ".repeat(200)}\n`
      yield* ChatServer.make(Echo, { maxConnections: 0, rejectMessage: refusal }).pipe(Effect.provideContext(context))
      const leaving = yield* memoryPeer({ silent: true }).pipe(Effect.provideContext(context))
      yield* Effect.sleep("20 millis")
      leaving.socket.destroy() // the refusal's write fails under it: with nobody listening, an uncaught error
      yield* Effect.sleep("50 millis")
      const next = yield* memoryPeer().pipe(Effect.provideContext(context))
      yield* next.until("the refusal and the end", (p) => p.ended)
      expect(next.text).toBe(refusal)
    }))
})
