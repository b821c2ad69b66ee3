import { describe, expect, it } from "@effect/vitest"
import { Effect, Schema, Stream } from "effect"
import * as Chat from "../src/Chat.ts"
import * as ChatClient from "../src/ChatClient.ts"
import * as ChatServer from "../src/ChatServer.ts"
import type * as Framing from "../src/Framing.ts"
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
