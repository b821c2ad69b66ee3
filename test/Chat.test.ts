/**
 * The `Chat` handle of a connection, end to end over the in-memory transport: its output effects and the one
 * reader its input allows.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Fiber, Option, Stream } from "effect"
import * as Chat from "../src/Chat.ts"
import * as ChatServer from "../src/ChatServer.ts"
import * as Protocol from "../src/Protocol.ts"
import * as Terminator from "../src/Terminator.ts"
import { text } from "./helpers.ts"
import { connectLines, Echo, memory, readAll, readLines } from "./memory-helpers.ts"

describe("Output effects", () => {
  it.effect("push and offer are effects: each run sends its bytes once more, one never run sends nothing", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo)
      const client = yield* connectLines
      const hi = client.chat.offer("hi\n")
      const ho = client.chat.push("ho\n")
      // built and dropped, never run: nothing is sent
      const dropped = client.chat.push("never run\n")
      expect(Effect.isEffect(dropped)).toBe(true)
      yield* hi
      yield* client.chat.push("x\n")
      yield* hi
      yield* Effect.repeat(ho, { times: 2 })
      yield* hi
      expect(yield* readLines(client, 7)).toEqual(["hi", "x", "hi", "ho", "ho", "ho", "hi"])
    }).pipe(Effect.provide(memory())))

  it.effect("what a handler pushes before it waits on something else goes out without waiting for it", () =>
    Effect.gen(function*() {
      const gate = yield* Deferred.make<void>()
      const AckThenWait = Protocol.make(
        Terminator.lf,
        (lines) =>
          Stream.runForEach(lines, (line) => Effect.andThen(Chat.push("ack ", line.bytes, "\n"), Deferred.await(gate)))
      )
      yield* ChatServer.make(AckThenWait)
      const client = yield* connectLines
      yield* client.chat.push("one\ntwo\n")
      expect(yield* readLines(client, 1)).toEqual(["ack one"])
      yield* Deferred.succeed(gate, undefined)
      expect(yield* readLines(client, 1)).toEqual(["ack two"])
    }).pipe(Effect.provide(memory())))

  it.effect("the handle's members work when taken off it, as a service's are", () =>
    Effect.gen(function*() {
      const Greeter = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          const { closeWhenDone, id, offer, push, pushStream } = yield* Chat.Chat
          yield* Stream.runForEach(Stream.take(lines, 1), (line) =>
            Effect.gen(function*() {
              yield* push(`${id} `, line.bytes, "\n")
              expect(yield* offer("offered\n")).toBe(true)
              yield* pushStream(Stream.make(new TextEncoder().encode("streamed\n")))
            }))
          yield* closeWhenDone
        }))
      yield* ChatServer.make(Greeter)
      const client = yield* connectLines
      yield* client.chat.push("hello\n")
      expect(yield* readAll(client)).toBe("1 hello\noffered\nstreamed\n")
    }).pipe(Effect.provide(memory())))
})

describe("One reader per input", () => {
  it.effect("a second fiber reading a client's input at once is a defect, not a silent wait", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Echo)
      const client = yield* connectLines
      const first = yield* Effect.forkChild(Stream.runHead(client.input), { startImmediately: true })
      const second = yield* Effect.exit(Stream.runHead(client.input))
      assert(Exit.isFailure(second))
      expect(Exit.isFailure(second) && String(Cause.squash(second.cause))).toMatch(/read by two fibers at once/)
      yield* client.chat.push("still mine\n")
      const line = yield* Fiber.join(first)
      expect(Option.map(line, (frame) => text(frame.bytes))).toEqual(Option.some("still mine"))
    }).pipe(Effect.provide(memory())))
})
