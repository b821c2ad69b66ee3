import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as Chat from "../src/Chat.ts"
import * as ChatClient from "../src/ChatClient.ts"
import * as ChatServer from "../src/ChatServer.ts"
import * as MemoryTransport from "../src/MemoryTransport.ts"
import * as Producer from "../src/Producer.ts"
import * as Protocol from "../src/Protocol.ts"
import * as Terminator from "../src/Terminator.ts"
import { text } from "./helpers.ts"

const encode = (s: string) => new TextEncoder().encode(s)

describe("Producer.fromMore", () => {
  it.effect("calls more() until it returns an empty buffer, and not after", () =>
    Effect.gen(function*() {
      let calls = 0
      const parts = ["3\n", "2\n", "1\n", ""]
      const chunks = yield* Stream.runCollect(Producer.fromMore(() => encode(parts[calls++])))
      expect(chunks.map(text)).toEqual(["3\n", "2\n", "1\n"])
      expect(calls).toBe(4)
    }))

  it.effect("is lazy and runs anew each time the stream runs, as asynchat calls more() only when it can send", () =>
    Effect.gen(function*() {
      let calls = 0
      const once = Producer.fromMore(() => encode(calls++ % 2 === 0 ? "x" : ""))
      expect(calls).toBe(0)
      yield* Stream.runDrain(once)
      yield* Stream.runDrain(once)
      expect(calls).toBe(4)
    }))

  it.effect("goes out through pushStream in order with what is pushed around it", () =>
    Effect.gen(function*() {
      const Countdown = Protocol.make(Terminator.lf, () =>
        Effect.gen(function*() {
          let n = 3
          yield* Chat.push("start\n")
          yield* Chat.pushStream(Producer.fromMore(() => encode(n > 0 ? `${n--}\n` : "")))
          yield* Chat.push("liftoff\n")
        }))
      yield* ChatServer.make(Countdown)
      const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
      yield* client.chat.push("go\n")
      const lines = yield* client.input.pipe(Stream.map((frame) => text(frame.bytes)), Stream.runCollect)
      expect(lines).toEqual(["start", "3", "2", "1", "liftoff"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 1 }))))
})
