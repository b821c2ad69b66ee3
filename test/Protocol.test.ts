import { describe, expect, it } from "@effect/vitest"
import { Cause, Deferred, Effect, Exit, Option, Schema, Stream } from "effect"
import * as Chat from "../src/Chat.ts"
import * as ChatClient from "../src/ChatClient.ts"
import * as ChatServer from "../src/ChatServer.ts"
import * as Framing from "../src/Framing.ts"
import * as MemoryTransport from "../src/MemoryTransport.ts"
import * as Protocol from "../src/Protocol.ts"
import * as Terminator from "../src/Terminator.ts"
import { text } from "./helpers.ts"
import { connectLines, memory, readAll, readLines } from "./memory-helpers.ts"

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

const Calculator = Protocol.make(Terminator.lf, (lines) =>
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

/** The lines a server with `protocol` answers to `sent` (then the client's end of output), up to its close. */
const replies = (protocol: Protocol.Protocol<unknown, never>, sent: string, options?: ChatServer.Options) =>
  Effect.scoped(Effect.gen(function*() {
    yield* ChatServer.make(protocol, options)
    const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
    yield* client.chat.push(sent)
    yield* client.chat.endOutput
    // the server closes after its last answer
    return yield* Stream.runCollect(Stream.map(client.input, (frame) => text(frame.bytes)))
  }))

describe("Protocol.forEach, forEachBatch and make", () => {
  const input = "alpha\nbeta\n\ngamma-delta\nepsilon\nzeta\n"
  const lines = ["alpha", "beta", "", "gamma-delta", "epsilon", "zeta"]

  // "<n>\n" then n bytes: a machine's messages; "x" for n is its own error
  const Sized = Framing.machine<number | undefined, Uint8Array, string>({
    initial: undefined,
    terminator: (n) => (n === undefined ? Terminator.lf : Terminator.length(n)),
    step: (n, frame) => {
      if (n !== undefined) return Framing.next(undefined, frame.bytes)
      return text(frame.bytes) === "x" ? Framing.fail("no size") : Framing.next(Number(text(frame.bytes)))
    }
  })

  /** Echoes by batch, by frame, by message and by stream, each telling `ended` once its loop is over. */
  const echoes = (ended: Deferred.Deferred<void>) => {
    const thenEnded = Protocol.mapHandler(<E, R>(loop: Effect.Effect<unknown, E, R>) =>
      Effect.andThen(loop, Deferred.succeed(ended, void 0))
    )
    return {
      batches: Protocol.forEachBatch(
        Terminator.lf,
        (batch) => Chat.push(...batch.flatMap((line) => [line.bytes, "\n"]))
      )
        .pipe(thenEnded),
      frames: Protocol.forEach(Terminator.lf, (frame) => Chat.push(frame.bytes, "\n")).pipe(thenEnded),
      messages: Protocol.forEach(Sized, (body) => Chat.push(body, "\n")).pipe(thenEnded),
      messageBatches: Protocol.forEachBatch(Sized, (bodies) => Chat.push(...bodies.flatMap((body) => [body, "\n"])))
        .pipe(thenEnded),
      stream: Protocol.make(
        Terminator.lf,
        (frames) => Stream.runForEach(frames, (frame) => Chat.push(frame.bytes, "\n"))
      ).pipe(thenEnded)
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
        expect(yield* exchange((p) => p.stream, input, lines.length, chunking)).toEqual(lines)
        const sized = "5\nhello3\nabc0\n"
        expect(yield* exchange((p) => p.messages, sized, 3, chunking)).toEqual(["hello", "abc", ""])
        expect(yield* exchange((p) => p.messageBatches, sized, 3, chunking)).toEqual(["hello", "abc", ""])
      }))
  }

  it.effect("forEach runs `f` for each frame once the effect of the one before is done", () =>
    Effect.gen(function*() {
      const log: Array<string> = []
      const Slow = Protocol.forEach(Terminator.lf, (frame) =>
        Effect.gen(function*() {
          log.push(`start ${text(frame.bytes)}`)
          for (let i = 0; i < 5; i++) yield* Effect.yieldNow
          log.push(`end ${text(frame.bytes)}`)
          yield* Chat.push(frame.bytes, "\n")
        }))
      expect(yield* replies(Slow, "a\nb\n")).toEqual(["a", "b"])
      expect(log).toEqual(["start a", "end a", "start b", "end b"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: "whole" }))))

  it.effect("forEach and forEachBatch make `f` once per connection when given an effect, in the connection", () =>
    Effect.gen(function*() {
      let made = 0
      const numbered = Effect.gen(function*() {
        made++
        const chat = yield* Chat.Chat
        let n = 0
        return (line: Framing.Frame) => chat.push(`${chat.id}.${++n} ${text(line.bytes)}\n`)
      })
      const counted = Effect.map(Chat.Chat, (chat) => {
        made++
        let reads = 0
        return (lines: ReadonlyArray<Framing.Frame>) => chat.push(`${++reads}: ${lines.length}\n`)
      })
      const inMemory = Effect.provide(MemoryTransport.layer({ chunking: "whole" }))
      const Numbered = Protocol.forEach(Terminator.lf, numbered)
      expect(yield* replies(Numbered, "a\nb\nc\n").pipe(inMemory)).toEqual(["1.1 a", "1.2 b", "1.3 c"])
      expect(yield* replies(Numbered, "d\n").pipe(inMemory)).toEqual(["1.1 d"])
      expect(yield* replies(Protocol.forEachBatch(Terminator.lf, counted), "a\nb\n").pipe(inMemory)).toEqual(["1: 2"])
      expect(made).toBe(3)
    }))

  it.effect("forEachBatch runs `f` once per read, with what that read completed", () =>
    Effect.gen(function*() {
      const Counts = Protocol.forEachBatch(Terminator.lf, (batch) => Chat.push(`${batch.length}\n`))
      // the client's one write of three lines arrives as one read
      expect(yield* replies(Counts, "a\nb\nc\n")).toEqual(["3"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: "whole" }))))

  it.effect("fails as the input fails: an over-long frame reaches the handler as its ChatError", () =>
    Effect.gen(function*() {
      const Guarded = Protocol.forEach(Terminator.lf, (frame) => Chat.push(frame.bytes, "\n")).pipe(
        Protocol.mapHandler(
          Effect.catchReason("ChatError", "FrameTooLong", (reason) => Chat.push(`too long: ${reason.limit}\n`))
        )
      )
      expect(yield* replies(Guarded, "short\nmuch too long for it\n", { maxFrameLength: 8 })).toEqual([
        "short",
        "too long: 8"
      ])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 3 }))))

  it.effect("fails with the machine's own error, after the messages cut before it", () =>
    Effect.gen(function*() {
      const Guarded = Protocol.forEach(Sized, (body) => Chat.push(body, "\n")).pipe(
        Protocol.mapHandler(Effect.catch((error) => Chat.push(`failed: ${typeof error === "string" ? error : "?"}\n`)))
      )
      expect(yield* replies(Guarded, "2\nokx\n3\nabc")).toEqual(["ok", "failed: no size"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 2 }))))

  it.effect("a failure of `f` ends the loop with it, after what it answered before", () =>
    Effect.gen(function*() {
      const Strict = Protocol.forEach(
        Terminator.lf,
        (frame) => text(frame.bytes) === "bad" ? Effect.fail("bad line") : Chat.push(frame.bytes, "\n")
      ).pipe(Protocol.mapHandler(Effect.catch((error) => Chat.push(`${String(error)}\n`))))
      expect(yield* replies(Strict, "one\nbad\nnever\n")).toEqual(["one", "bad line"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: "whole" }))))

  it.effect("a defect that comes with an end (`f` failing with Done, a finalizer dying) fails it, as Stream's", () =>
    Effect.gen(function*() {
      const outcomes: Array<string> = []
      const recorded = Protocol.mapHandler(<E, R>(handler: Effect.Effect<unknown, E, R>) =>
        Effect.onExit(handler, (exit) =>
          Effect.sync(() => {
            outcomes.push(Exit.isSuccess(exit) ? "success" : Cause.hasDies(exit.cause) ? "defect" : "failure")
          }))
      )
      const protocols = [
        Protocol.make(Terminator.lf, (frames) => Stream.runForEach(frames, endsAndDies)),
        Protocol.forEach(Terminator.lf, endsAndDies),
        Protocol.forEachBatch(Terminator.lf, endsAndDies)
      ]
      for (const protocol of protocols) {
        yield* replies(protocol.pipe(recorded), "x\n").pipe(Effect.provide(MemoryTransport.layer()))
      }
      expect(outcomes).toEqual(["defect", "defect", "defect"])
    }))

  it.effect("make: the handler reads its input in several passes, losing nothing that arrived together", () =>
    Effect.gen(function*() {
      const GreetThenCount = Protocol.make(Terminator.lf, (frames) =>
        Effect.gen(function*() {
          const hello = yield* Stream.runHead(frames)
          if (hello._tag === "Some") yield* Chat.push(`hello ${text(hello.value.bytes)}\n`)
          let n = 0
          yield* Stream.runForEach(frames, (frame) => Chat.push(`${++n} ${text(frame.bytes)}\n`))
        }))
      expect(yield* replies(GreetThenCount, "ann\nx\ny\n")).toEqual(["hello ann", "1 x", "2 y"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: "whole" }))))

  it.effect("make: the input fails with ChatError or the machine's error, and ends with the input", () =>
    Effect.gen(function*() {
      const Collect = Protocol.make(Sized, (bodies) =>
        Stream.runCollect(bodies).pipe(
          Effect.flatMap((all) => Chat.push(`${all.map(text).join(",")}\n`)),
          Effect.catch((error) => Chat.push(`failed: ${typeof error === "string" ? error : error.reason._tag}\n`))
        ))
      const inMemory = Effect.provide(MemoryTransport.layer({ chunking: 1 }))
      expect(yield* replies(Collect, "1\na2\nbc").pipe(inMemory)).toEqual(["a,bc"])
      expect(yield* replies(Collect, "1\nax\n").pipe(inMemory)).toEqual(["failed: no size"])
      expect(yield* replies(Collect, "1\na99\n", { maxFrameLength: 8 }).pipe(inMemory)).toEqual([
        "failed: FrameTooLong"
      ])
    }))

  it.effect("make: a stream the handler makes from its input is read as any stream", () =>
    Effect.gen(function*() {
      const Upper = Protocol.make(Terminator.lf, (frames) =>
        frames.pipe(
          Stream.map((frame) => text(frame.bytes).toUpperCase()),
          Stream.take(2),
          Stream.runForEach((line) => Chat.push(line, "\n"))
        ))
      expect(yield* replies(Upper, "ab\ncd\n")).toEqual(["AB", "CD"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 1 }))))

  it.effect("a client's input is read the same way, up to the server's close", () =>
    Effect.gen(function*() {
      const TwoThenClose = Protocol.make(Terminator.lf, () => Chat.push("one\ntwo\n"))
      yield* ChatServer.make(TwoThenClose)
      const client = yield* ChatClient.connect(yield* MemoryTransport.connector, { terminator: Terminator.lf })
      const seen: Array<string> = []
      yield* Stream.runForEach(client.input, (frame) => Effect.sync(() => seen.push(text(frame.bytes))))
      expect(seen).toEqual(["one", "two"])
    }).pipe(Effect.provide(MemoryTransport.layer({ chunking: 2 }))))

  it("isProtocol tells a protocol from anything else", () => {
    expect(Protocol.isProtocol(Protocol.forEach(Terminator.lf, () => Effect.void))).toBe(true)
    expect(Protocol.isProtocol(Protocol.make(Sized, () => Effect.void))).toBe(true)
    expect(Protocol.isProtocol({ mode: { _tag: "Fixed" }, handler: () => Effect.void })).toBe(false)
  })
})

describe("Protocol.make with a machine on a connection", () => {
  it.effect("machine: ECHO <n> then n bytes, at every chunking", () =>
    Effect.gen(function*() {
      const Commands = Framing.machine<number | undefined, Uint8Array, string>({
        initial: undefined,
        terminator: (n) => (n === undefined ? Terminator.lf : Terminator.length(n)),
        step: (n, frame) => {
          if (n !== undefined) return Framing.next(undefined, frame.bytes)
          const m = /^ECHO (\d+)$/.exec(text(frame.bytes))
          return m ? Framing.next(Number(m[1])) : Framing.fail(`bad command: ${text(frame.bytes)}`)
        }
      })
      const EchoN = Protocol.make(Commands, (bodies) =>
        Stream.runForEach(bodies, (body) =>
          Chat.push(`${body.length}:`, body, "\n")).pipe(
            Effect.catchIf((e) => typeof e === "string", (e) => Chat.push(`-ERR ${e}\n`))
          ))
      yield* ChatServer.make(EchoN)
      const client = yield* connectLines
      yield* client.chat.push("ECHO 5\nab\ncdECHO 0\nECHO 3\nxyzHELLO\n")
      expect(yield* readAll(client)).toBe("5:ab\ncd\n0:\n3:xyz\n-ERR bad command: HELLO\n")
    }).pipe(Effect.provide(memory({ chunking: { random: 5, maxPiece: 4 } }))))
})

describe("Input read in several passes", () => {
  // Regression: with frames handed out in batches, a run that stopped early (runHead, take) dropped the rest of
  // its batch: the frames that arrived in the same read as the first one were silently lost.
  it.effect("a handler that reads its first line with runHead, then the rest, gets every line", () =>
    Effect.gen(function*() {
      const GreetThenEcho = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          const first = yield* Stream.runHead(lines)
          yield* Chat.push(`hello ${Option.match(first, { onNone: () => "?", onSome: (f) => text(f.bytes) })}\n`)
          yield* Stream.runForEach(lines, (line) => Chat.push(line.bytes, "\n"))
        }))
      yield* ChatServer.make(GreetThenEcho)
      const client = yield* connectLines
      yield* client.chat.push("me\nb\nc\n") // one write, one read on the server: three frames at once
      expect(yield* readLines(client, 1)).toEqual(["hello me"])
      expect(yield* readLines(client, 2)).toEqual(["b", "c"]) // the client's input, read in passes too
    }).pipe(Effect.provide(memory())))
})

describe("Protocol.forEachBatch", () => {
  it.effect("hands `f` each read's frames as one array, and keeps state across reads", () =>
    Effect.gen(function*() {
      const Sizes = Protocol.forEachBatch(
        Terminator.lf,
        Effect.sync(() => {
          let first = true
          return (lines: ReadonlyArray<Framing.Frame>) => {
            const joined = lines.map((f) => text(f.bytes)).join(",")
            const answer = first ? `first read: ${joined}\n` : `${joined}\n`
            first = false
            return Chat.push(answer)
          }
        })
      )
      yield* ChatServer.make(Sizes)
      const client = yield* connectLines
      yield* client.chat.push("a\nb\nc\n")
      expect(yield* readLines(client, 1)).toEqual(["first read: a,b,c"])
      yield* client.chat.push("d\ne\n")
      expect(yield* readLines(client, 1)).toEqual(["d,e"])
    }).pipe(Effect.provide(memory())))

  it("refuses a fixed length(0), as forEach and make do", () => {
    expect(() => Protocol.forEachBatch(Terminator.length(0), () => Effect.void)).toThrow(/empty frames forever/)
    expect(() => Protocol.forEach(Terminator.length(0), () => Effect.void)).toThrow(/empty frames forever/)
    expect(() => Protocol.make(Terminator.length(0), () => Effect.void)).toThrow(/empty frames forever/)
  })
})
