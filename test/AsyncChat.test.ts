/**
 * asynchat's imperative style on a connection: `AsyncChat.make`, its state, `onConnect`, and the `AsyncChat`
 * service only its handlers have.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as AsyncChat from "../src/AsyncChat.ts"
import * as Chat from "../src/Chat.ts"
import * as ChatServer from "../src/ChatServer.ts"
import * as Protocol from "../src/Protocol.ts"
import * as Terminator from "../src/Terminator.ts"
import { text } from "./helpers.ts"
import { connectLines, memory, readAll, readLines } from "./memory-helpers.ts"

describe("AsyncChat.make on a connection", () => {
  it.effect("AsyncChat.make: setTerminator in foundTerminator applies to bytes already received", () =>
    Effect.gen(function*() {
      const Http = AsyncChat.make({
        terminator: Terminator.delimiter("\r\n\r\n"),
        foundTerminator: (frame) =>
          Effect.gen(function*() {
            const chat = yield* Chat.Chat
            const framing = yield* AsyncChat.AsyncChat
            const current = yield* framing.terminator
            if (current._tag === "Delimiter") {
              const length = /content-length: *(\d+)/i.exec(text(frame.bytes))?.[1]
              return yield* framing.setTerminator(Terminator.length(Number(length)))
            }
            if (current._tag === "Length") {
              yield* framing.setTerminator(Terminator.none)
              yield* chat.push(`body=${text(frame.bytes)}\n`)
              return yield* chat.closeWhenDone
            }
          })
      })
      yield* ChatServer.make(Http)
      const client = yield* connectLines
      yield* client.chat.push("POST / HTTP/1.0\r\nContent-Length: 5\r\n\r\nhelloOVERSENT")
      expect(yield* readAll(client)).toBe("body=hello\n")
    }).pipe(Effect.provide(memory())))

  it.effect("AsyncChat.make: state made fresh per connection, as asynchat keeps it on self", () =>
    Effect.gen(function*() {
      const Counting = AsyncChat.make({
        terminator: Terminator.lf,
        initialState: () => ({ seen: 0 }),
        foundTerminator: (frame, state) => Chat.push(`${++state.seen}:${text(frame.bytes)}\n`)
      })
      yield* ChatServer.make(Counting)
      const [a, b] = yield* Effect.forEach([1, 2], () => connectLines)
      yield* a.chat.push("x\ny\n")
      yield* b.chat.push("z\n")
      expect(yield* readLines(a, 2)).toEqual(["1:x", "2:y"])
      expect(yield* readLines(b, 1)).toEqual(["1:z"])
    }).pipe(Effect.provide(memory())))

  it.effect("AsyncChat.make: onConnect runs before the first frame (asynchat's handle_connect: speak first)", () =>
    Effect.gen(function*() {
      const Greeter = AsyncChat.make({
        terminator: Terminator.lf,
        onConnect: () => Chat.push("220 ready\n"),
        foundTerminator: (frame) => Chat.push(`250 ${text(frame.bytes)}\n`)
      })
      yield* ChatServer.make(Greeter)
      const client = yield* connectLines
      expect(yield* readLines(client, 1)).toEqual(["220 ready"])
      yield* client.chat.push("HELO\n")
      expect(yield* readLines(client, 1)).toEqual(["250 HELO"])
    }).pipe(Effect.provide(memory())))

  // Changing the terminator is AsyncChat's alone: a protocol framed up front has no terminator to change, and a
  // handler of one that asks for the service is a type error (it was a defect at run time when Chat had it).
  it.effect("AsyncChat is in the context of an AsyncChat.make handler only", () =>
    Effect.gen(function*() {
      const has = Effect.map(Effect.serviceOption(AsyncChat.AsyncChat), (service) => `${service._tag}\n`)
      const Framed = Protocol.forEach(Terminator.lf, () => Effect.flatMap(has, (line) => Chat.push(line)))
      const Imperative = AsyncChat.make({
        terminator: Terminator.lf,
        foundTerminator: () => Effect.flatMap(has, (line) => Chat.push(line))
      })
      const answers: Array<Array<string>> = []
      for (const protocol of [Framed, Imperative]) {
        answers.push(
          yield* Effect.scoped(Effect.gen(function*() {
            yield* ChatServer.make(protocol)
            const client = yield* connectLines
            yield* client.chat.push("x\n")
            return yield* readLines(client, 1)
          })).pipe(Effect.provide(memory()))
        )
      }
      expect(answers).toEqual([["None"], ["Some"]])
      const Wrong = Protocol.forEach(Terminator.lf, () => AsyncChat.setTerminator(Terminator.length(3)))
      // @ts-expect-error AsyncChat is left required: no server or client serves a Protocol.forEach that asks for it
      const framedUpFront: Protocol.Protocol<unknown, never> = Wrong
      expect(Protocol.isProtocol(framedUpFront)).toBe(true)
    }))
})
