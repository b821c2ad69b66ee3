import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Schema, Stream } from "effect"
import * as Chat from "../src/Chat.ts"
import * as ChatClient from "../src/ChatClient.ts"
import * as ChatServer from "../src/ChatServer.ts"
import * as Framing from "../src/Framing.ts"
import * as MemoryTransport from "../src/MemoryTransport.ts"
import * as Protocol from "../src/Protocol.ts"
import * as Terminator from "../src/Terminator.ts"
import { text } from "./helpers.ts"

// A JSON-lines calculator: bytes → lines (a terminator) → typed requests (a Schema) → handler → encoder → bytes.
// Each stage is a plain function, testable alone.
const Request = Schema.fromJsonString(
  Schema.Struct({ op: Schema.Literals(["add", "mul"]), args: Schema.Array(Schema.Finite) })
)
const Response = Schema.fromJsonString(Schema.Struct({ result: Schema.Finite }))

const decodeRequests = <E>(lines: Stream.Stream<Framing.Frame, E>) =>
  Stream.mapEffect(lines, (line) => Schema.decodeEffect(Request)(text(line.bytes)))

const answer = (request: typeof Request.Type) => ({
  result: request.op === "add" ? request.args.reduce((a, b) => a + b, 0) : request.args.reduce((a, b) => a * b, 1)
})

const encodeResponse = (response: typeof Response.Type) =>
  Effect.map(Schema.encodeEffect(Response)(response), (json) => `${json}\n`)

const Calculator = Protocol.frames(Terminator.lf, (lines) =>
  decodeRequests(lines).pipe(
    Stream.map(answer),
    Stream.mapEffect(encodeResponse),
    Stream.runForEach((json) => Chat.push(json)),
    Effect.catchTag("SchemaError", () => Chat.push("{\"error\":\"bad request\"}\n"))
  ))

describe("Protocol pipelines", () => {
  it.effect("each stage works alone", () =>
    Effect.gen(function*() {
      const frame = { bytes: new TextEncoder().encode("{\"op\":\"mul\",\"args\":[6,7]}"), terminated: true }
      const [request] = yield* Stream.runCollect(decodeRequests(Stream.make(frame)))
      expect(request).toEqual({ op: "mul", args: [6, 7] })
      expect(answer(request)).toEqual({ result: 42 })
      expect(yield* encodeResponse({ result: 42 })).toBe("{\"result\":42}\n")
    }))

  it.effect("compose into a protocol: typed requests in, encoded answers out, a bad request answered and closed", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Calculator)
      const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
      yield* client.chat.push("{\"op\":\"add\",\"args\":[1,2,3]}\n{\"op\":\"mul\",\"args\":[6,7]}\n{\"op\":\"pow\"}\n")
      const replies = yield* Stream.runCollect(Stream.map(client.input, (frame) => text(frame.bytes)))
      expect(replies).toEqual(["{\"result\":6}", "{\"result\":42}", "{\"error\":\"bad request\"}"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: { random: 1 } }))))
})

/** An element's effect that ends the input (as a `Queue.take` on an ended queue does) while a finalizer dies. */
const endsAndDies = () => Effect.ensuring(Cause.done(), Effect.die("boom"))

/** The lines a server with `protocol` answers to `sent`, up to its close. */
const replies = (protocol: Protocol.Protocol<unknown, never>, sent: string, options?: ChatServer.Options) =>
  Effect.scoped(Effect.gen(function*() {
    yield* ChatServer.make(protocol, options)
    const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
    yield* client.chat.push(sent)
    // the server closes after its last answer
    return yield* Stream.runCollect(Stream.map(client.input, (frame) => text(frame.bytes)))
  }))

describe("Protocol.runForEach", () => {
  const input = "alpha\nbeta\n\ngamma-delta\nepsilon\nzeta\n"
  const lines = ["alpha", "beta", "", "gamma-delta", "epsilon", "zeta"]

  // "<n>\n" then n bytes: a machine's messages
  const Sized = Framing.machine<number | undefined, Uint8Array, string>({
    initial: undefined,
    terminator: (n) => (n === undefined ? Terminator.lf : Terminator.length(n)),
    step: (n, frame) => n !== undefined ? Framing.next(undefined, frame.bytes) : Framing.next(Number(text(frame.bytes)))
  })

  /** Three echoes, by batch, by frame and by message, each telling `ended` once its loop is over. */
  const echoes = (ended: Deferred.Deferred<void>) => {
    const thenEnded = <E, R>(loop: Effect.Effect<void, E, R>) => Effect.andThen(loop, Deferred.succeed(ended, void 0))
    return {
      batches: Protocol.batches(Terminator.lf, (batches) =>
        Effect.flatMap(Chat.Chat, (chat) =>
          thenEnded(
            Protocol.runForEach(batches, (batch) => chat.push(...batch.flatMap((line) => [line.bytes, "\n"])))
          ))),
      frames: Protocol.frames(
        Terminator.lf,
        (frames) => thenEnded(Protocol.runForEach(frames, (frame) => Chat.push(frame.bytes, "\n")))
      ),
      messages: Protocol.machine(
        Sized,
        (bodies) => thenEnded(Protocol.runForEach(bodies, (body) => Chat.push(body, "\n")))
      )
    }
  }

  /** Sends `sent`, reads `n` lines back, then closes: the server's loop must see the end of its input. */
  const exchange = (
    pick: (protocols: ReturnType<typeof echoes>) => Protocol.Protocol<unknown, never>,
    sent: string,
    n: number,
    chunking: MemoryTransport.Chunking
  ) =>
    Effect.scoped(Effect.gen(function*() {
      const ended = yield* Deferred.make<void>()
      yield* ChatServer.make(pick(echoes(ended)))
      const replies = yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
        yield* client.chat.push(sent)
        return yield* Stream.runCollect(Stream.take(Stream.map(client.input, (frame) => text(frame.bytes)), n))
      }))
      yield* Deferred.await(ended)
      return replies
    })).pipe(Effect.provide(MemoryTransport.layer({ chunking })))

  for (const chunking of [1, 2, 3, 5, 7, 64, "whole"] as const) {
    it.effect(`hands every element over in order, and ends with the input (chunks of ${chunking})`, () =>
      Effect.gen(function*() {
        expect(yield* exchange((p) => p.batches, input, lines.length, chunking)).toEqual(lines)
        expect(yield* exchange((p) => p.frames, input, lines.length, chunking)).toEqual(lines)
        expect(yield* exchange((p) => p.messages, "5\nhello3\nabc0\n", 3, chunking)).toEqual(["hello", "abc", ""])
      }))
  }

  it.effect("fails as the input fails: an over-long frame reaches the handler as its ChatError", () =>
    Effect.gen(function*() {
      const Guarded = Protocol.frames(
        Terminator.lf,
        (frames) =>
          Protocol.runForEach(frames, (frame) => Chat.push(frame.bytes, "\n")).pipe(
            Effect.catchReason("ChatError", "FrameTooLong", (reason) => Chat.push(`too long: ${reason.limit}\n`))
          )
      )
      expect(yield* replies(Guarded, "short\nmuch too long for it\n", { maxFrameLength: 8 })).toEqual([
        "short",
        "too long: 8"
      ])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 3 }))))

  it.effect("a failure of `f` ends the loop with it, after what it answered before", () =>
    Effect.gen(function*() {
      const Strict = Protocol.frames(Terminator.lf, (frames) =>
        Protocol.runForEach(frames, (frame) =>
          text(frame.bytes) === "bad" ? Effect.fail("bad line") : Chat.push(frame.bytes, "\n")).pipe(
            Effect.catch((error) =>
              Chat.push(`${error}\n`)
            )
          ))
      expect(yield* replies(Strict, "one\nbad\nnever\n")).toEqual(["one", "bad line"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: "whole" }))))

  it.effect("a defect that comes with an end (`f` failing with Done, a finalizer dying) fails it, as Stream's", () =>
    Effect.gen(function*() {
      const outcomes: Array<string> = []
      const Recorded = (run: (frames: Stream.Stream<Framing.Frame, unknown>) => Effect.Effect<void, unknown>) =>
        Protocol.frames(Terminator.lf, (frames) =>
          Effect.onExit(run(frames), (exit) =>
            Effect.sync(() => {
              outcomes.push(Exit.isSuccess(exit) ? "success" : Cause.hasDies(exit.cause) ? "defect" : "failure")
            })))
      for (const run of [Stream.runForEach, Protocol.runForEach]) {
        yield* replies(Recorded((frames) => run(frames, endsAndDies)), "x\n").pipe(
          Effect.provide(MemoryTransport.layer())
        )
      }
      expect(outcomes).toEqual(["defect", "defect"])
    }))

  it.effect("on a stream the handler made from its input, it is Stream.runForEach", () =>
    Effect.gen(function*() {
      const Upper = Protocol.frames(Terminator.lf, (frames) =>
        frames.pipe(
          Stream.map((frame) => text(frame.bytes).toUpperCase()),
          Stream.take(2),
          Protocol.runForEach((line) => Chat.push(line, "\n"))
        ))
      expect(yield* replies(Upper, "ab\ncd\n")).toEqual(["AB", "CD"])
      const collected: Array<number> = []
      yield* Protocol.runForEach(Stream.make(1, 2, 3), (n) => Effect.sync(() => collected.push(n)))
      expect(collected).toEqual([1, 2, 3])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 1 }))))

  it.effect("reads a client's input the same way, up to the server's close", () =>
    Effect.gen(function*() {
      const TwoThenClose = Protocol.frames(Terminator.lf, () => Chat.push("one\ntwo\n"))
      yield* ChatServer.make(TwoThenClose)
      const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
      const seen: Array<string> = []
      yield* Protocol.runForEach(client.input, (frame) => Effect.sync(() => seen.push(text(frame.bytes))))
      expect(seen).toEqual(["one", "two"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 2 }))))
})
