import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Stream } from "effect"
import { TestClock } from "effect/testing"
// imported as an application's tests would: the package and its testing subpath
import { Chat, ChatClient, ChatServer, Protocol, Terminator } from "effect-asynchat"
import { MemoryTransport } from "effect-asynchat/testing"
import { text } from "./helpers.ts"
import { memoryPeer } from "./transport-helpers.ts"

const Echo = Protocol.forEach(Terminator.lf, (line) => Chat.push(line.bytes, "\n"))

/** Counts every line until the client's end of input, then answers once. */
const CountLines = Protocol.make(
  Terminator.lf,
  (lines) => Effect.flatMap(Stream.runCount(lines), (count) => Chat.push(`got ${count} lines\n`))
)

describe("endOutput over the in-memory transport", () => {
  it.effect("a client ends its output, the server sees its end of input, and the answer still arrives", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(CountLines)
      const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
      yield* client.chat.push("a\n", "b\n", "c\n")
      yield* client.chat.endOutput
      const answers = yield* client.input.pipe(Stream.map((frame) => text(frame.bytes)), Stream.runCollect)
      expect(answers).toEqual(["got 3 lines"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 1 }))))
})

/** The raw pieces a client receives for one server write of `data`. */
const piecesOf = (data: string) =>
  Effect.gen(function*() {
    const Say = Protocol.make(Terminator.lf, () => Chat.push(data))
    yield* ChatServer.make(Say)
    const peer = yield* memoryPeer()
    yield* peer.write("go\n")
    yield* peer.until("the server's end", (p) => p.ended)
    return peer.pieces
  })

describe("MemoryTransport", () => {
  // The example in the README, verbatim but for the imports.
  it.effect("echoes lines however they are cut, and hangs up on the silent", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo, { idleTimeout: "30 seconds" })
      const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
      yield* client.chat.push("hello\nworld\n")
      const replies = yield* Effect.forkChild(Stream.runCollect(client.input))
      yield* TestClock.adjust("30 seconds") // nothing more said: the server closes the connection
      const lines = (yield* Fiber.join(replies)).map((frame) => new TextDecoder().decode(frame.bytes))
      expect(lines).toEqual(["hello", "world"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 1 }))))

  it.effect("delivers a write whole by default", () =>
    Effect.map(piecesOf("abcdefghij"), (pieces) => expect(pieces).toEqual(["abcdefghij"])).pipe(
      Effect.provide(MemoryTransport.layer())
    ))

  it.effect("cuts writes into fixed pieces", () =>
    Effect.map(piecesOf("abcdefghij"), (pieces) => expect(pieces.join("|")).toBe("abc|def|ghi|j")).pipe(
      Effect.provide(MemoryTransport.layer({ chunking: 3 }))
    ))

  it.effect("cuts writes into seeded random pieces, the same on every run", () =>
    Effect.gen(function*() {
      const first = yield* piecesOf("the quick brown fox jumps over the lazy dog").pipe(
        Effect.provide(MemoryTransport.layer({ chunking: { random: 42, maxPiece: 5 } }))
      )
      const second = yield* piecesOf("the quick brown fox jumps over the lazy dog").pipe(
        Effect.provide(MemoryTransport.layer({ chunking: { random: 42, maxPiece: 5 } }))
      )
      expect(first.join("")).toBe("the quick brown fox jumps over the lazy dog")
      expect(first.every((p) => p.length >= 1 && p.length <= 5)).toBe(true)
      expect(first.length).toBeGreaterThan(8)
      expect(second).toEqual(first)
    }))

  it.effect("delivers each piece after the delay, on the test clock", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo)
      const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
      yield* client.chat.push("ping\n")
      const reply = yield* Effect.forkChild(Stream.runHead(client.input))
      yield* TestClock.adjust("199 millis")
      expect(reply.pollUnsafe()).toBeUndefined() // 100 ms there, 100 ms back
      yield* TestClock.adjust("1 millis")
      const frame = yield* Fiber.join(reply)
      expect(frame._tag === "Some" && text(frame.value.bytes)).toBe("ping")
    }).pipe(Effect.provide(MemoryTransport.layer({ delay: "100 millis" }))))

  it.effect("refuses a connection when no server is accepting", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Effect.flatMap(MemoryTransport.connector, (c) => ChatClient.connect(c, { terminator: Terminator.lf }))
      )
      expect(error.reason._tag).toBe("ConnectFailed")
      expect(error.message).toContain("no server is accepting")
    }).pipe(Effect.provide(MemoryTransport.layer())))

  it("refuses a nonsensical chunking when the layer is built", () => {
    const build = Effect.provide(Effect.void, MemoryTransport.layer({ chunking: 0 }))
    expect(() => Effect.runSync(build)).toThrow(/chunking must be >= 1/)
  })
})
