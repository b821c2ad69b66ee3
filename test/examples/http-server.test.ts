/**
 * The http-server example end to end: real curl and raw `node:net` clients over TCP on 127.0.0.1, and the
 * request machine on its own at every chunking.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import * as Crypto from "node:crypto"
import * as Fs from "node:fs"
import * as Os from "node:os"
import * as Path from "node:path"
import { HttpRequest, HttpServer, type RequestPart, serverOptions } from "../../examples/http-server.ts"
import { Framing } from "../../src/index.ts"
import { chunkEvery } from "../helpers.ts"
import { curl } from "../tools.ts"
import { httpServerAnswer, rawExchange, type Refusal, runCurl, withServer } from "./http-helpers.ts"

const curlTest = curl.available ? it.live : it.live.skip

const sha256 = (data: string | Uint8Array) => Crypto.createHash("sha256").update(data).digest("hex")

const answer = httpServerAnswer

const refused = (status: string, detail: string) => answer(status, `${status}: ${detail}\n`)

/** A temporary file of `size` random bytes, removed with the scope; returns its path and its bytes. */
const randomFile = (size: number) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      const dir = Fs.mkdtempSync(Path.join(Os.tmpdir(), "http-server-test-"))
      const file = Path.join(dir, "body.bin")
      const data = Crypto.randomBytes(size)
      Fs.writeFileSync(file, data)
      return { dir, file, data }
    }),
    ({ dir }) => Effect.sync(() => Fs.rmSync(dir, { recursive: true, force: true }))
  )

const serve = <A, E, R>(body: (port: number) => Effect.Effect<A, E, R>) =>
  withServer(HttpServer, serverOptions, (port) => body(port))

describe("http-server with curl", () => {
  curlTest(
    `GET answers with the method and path, then closes${curl.skipReason}`,
    () =>
      serve((port) =>
        Effect.gen(function*() {
          curl.require()
          const result = yield* runCurl("-i", `http://127.0.0.1:${port}/hello?lang=en`)
          expect(result.stderr).toBe("")
          expect(result.code).toBe(0)
          expect(result.stdout.toString("latin1")).toBe(answer("200 OK", "method: GET\npath: /hello?lang=en\n"))
        })
      )
  )

  curlTest(
    `HEAD answers with the headers a GET would have, and no body${curl.skipReason}`,
    () =>
      serve((port) =>
        Effect.gen(function*() {
          curl.require()
          const result = yield* runCurl("-I", `http://127.0.0.1:${port}/hello`)
          expect(result.code).toBe(0)
          const get = answer("200 OK", "method: HEAD\npath: /hello\n")
          expect(result.stdout.toString("latin1")).toBe(get.slice(0, get.indexOf("\r\n\r\n") + 4))
        })
      )
  )

  curlTest(
    `POST with a small body (-d) reports its length and SHA-256, and echoes it${curl.skipReason}`,
    () =>
      serve((port) =>
        Effect.gen(function*() {
          curl.require()
          const body = "name=kongxx&lang=typescript"
          const result = yield* runCurl("-i", "-d", body, `http://127.0.0.1:${port}/form`)
          expect(result.code).toBe(0)
          expect(result.stdout.toString("latin1")).toBe(answer(
            "200 OK",
            `method: POST\npath: /form\nbody-length: 27\nbody-sha256: ${sha256(body)}\nbody: ${body}\n`
          ))
        })
      )
  )

  curlTest(
    `POST of 3 MiB from a file (--data-binary @file): the server saw exactly those bytes${curl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        curl.require()
        // Not a multiple of the 16 KiB pieces the body is read in, so the last piece is a short one.
        const { data, file } = yield* randomFile(3 * 1024 * 1024 + 7)
        const expected = answer(
          "200 OK",
          `method: POST\npath: /upload\nbody-length: ${data.length}\nbody-sha256: ${sha256(data)}\n`
        )
        yield* serve((port) =>
          Effect.gen(function*() {
            // HTTP/1.1 with Expect: curl waits for the interim 100 Continue before it sends the body.
            const continued = yield* runCurl(
              "-i",
              "-H",
              "Expect: 100-continue",
              "--data-binary",
              `@${file}`,
              `http://127.0.0.1:${port}/upload`
            )
            expect(continued.code).toBe(0)
            expect(continued.stdout.toString("latin1")).toBe(`HTTP/1.1 100 Continue\r\n\r\n${expected}`)
            // HTTP/1.0: no Expect, the body follows the head at once.
            const plain = yield* runCurl(
              "-i",
              "--http1.0",
              "--data-binary",
              `@${file}`,
              `http://127.0.0.1:${port}/upload`
            )
            expect(plain.code).toBe(0)
            expect(plain.stdout.toString("latin1")).toBe(expected)
          })
        )
      }))
  )

  curlTest(
    `a malformed request line and a bad Content-Length get 400, and the server goes on${curl.skipReason}`,
    () =>
      serve((port) =>
        Effect.gen(function*() {
          curl.require()
          const url = `http://127.0.0.1:${port}/x`
          // A method with a space in it makes four words of the request line.
          const malformed = yield* runCurl("-i", "-X", "GE T", url)
          expect(malformed.code).toBe(0)
          expect(malformed.stdout.toString("latin1")).toBe(refused("400 Bad Request", "malformed request line"))
          for (const length of ["abc", "-5", "1e3"]) {
            const badLength = yield* runCurl("-i", "-H", `Content-Length: ${length}`, "-d", "x", url)
            expect(badLength.code).toBe(0)
            expect(badLength.stdout.toString("latin1")).toBe(
              refused("400 Bad Request", "Content-Length must be a decimal number")
            )
          }
          const after = yield* runCurl("-i", url)
          expect(after.stdout.toString("latin1")).toBe(answer("200 OK", "method: GET\npath: /x\n"))
        })
      )
  )

  curlTest(
    `serves ten curl clients at once, each its own answer${curl.skipReason}`,
    () =>
      serve((port) =>
        Effect.gen(function*() {
          curl.require()
          const results = yield* Effect.forEach(
            Array.from({ length: 10 }, (_, i) => i),
            (i) => runCurl("-d", `client ${i}`, `http://127.0.0.1:${port}/c${i}`),
            { concurrency: "unbounded" }
          )
          results.forEach((result, i) => {
            const body = `client ${i}`
            expect(result.stdout.toString("latin1")).toBe(
              `method: POST\npath: /c${i}\nbody-length: ${body.length}\nbody-sha256: ${sha256(body)}\nbody: ${body}\n`
            )
          })
        })
      )
  )
})

describe("http-server with a raw TCP client", () => {
  it.live("a client that over-sends is answered from Content-Length only, then closed", () =>
    serve((port) =>
      Effect.gen(function*() {
        const exchange = yield* rawExchange(port, [
          "POST /over HTTP/1.0\r\nContent-Length: 5\r\n\r\nhel",
          "loEXTRA BYTES BEYOND THE BODY\r\n\r\nGET /second HTTP/1.0\r\n\r\n"
        ])
        expect(exchange).toEqual({
          received: answer(
            "200 OK",
            `method: POST\npath: /over\nbody-length: 5\nbody-sha256: ${sha256("hello")}\nbody: hello\n`
          ),
          serverClosed: true
        })
      })
    ))

  const refusals: ReadonlyArray<Refusal> = [
    {
      name: "a malformed request line",
      request: ["GARBAGE\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed request line")
    },
    {
      name: "a path that is not origin-form",
      request: ["GET hello HTTP/1.0\r\n\r\n"],
      expected: refused("400 Bad Request", "the path must start with / and be printable ASCII")
    },
    {
      name: "a header line without a colon",
      request: ["GET / HTTP/1.0\r\nHost 127.0.0.1\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed header line")
    },
    {
      name: "a bare LF inside a header",
      request: ["GET / HTTP/1.0\r\nX-A: 1\nX-B: 2\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed header line")
    },
    {
      name: "a negative Content-Length",
      request: ["POST / HTTP/1.0\r\nContent-Length: -5\r\n\r\n"],
      expected: refused("400 Bad Request", "Content-Length must be a decimal number")
    },
    {
      name: "conflicting Content-Length headers",
      request: ["POST / HTTP/1.0\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
      expected: refused("400 Bad Request", "conflicting Content-Length headers")
    },
    {
      name: "a POST without Content-Length",
      request: ["POST / HTTP/1.0\r\n\r\n"],
      expected: refused("411 Length Required", "a POST needs a Content-Length")
    },
    {
      name: "a Content-Length over 16 MiB",
      request: ["POST / HTTP/1.0\r\nContent-Length: 16777217\r\n\r\n"],
      expected: refused("413 Content Too Large", "the body may be at most 16777216 bytes")
    },
    {
      name: "a Content-Length too large for a double",
      request: ["POST / HTTP/1.0\r\nContent-Length: 99999999999999999999999\r\n\r\n"],
      expected: refused("413 Content Too Large", "the body may be at most 16777216 bytes")
    },
    {
      name: "a chunked body",
      request: ["POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
      expected: refused("501 Not Implemented", "Transfer-Encoding is not supported: send Content-Length")
    },
    {
      name: "an unsupported method",
      request: ["DELETE /x HTTP/1.0\r\n\r\n"],
      expected: refused("501 Not Implemented", "method DELETE is not supported")
    },
    {
      name: "HTTP/2.0",
      request: ["GET / HTTP/2.0\r\n\r\n"],
      expected: refused("505 HTTP Version Not Supported", "HTTP/2.0 is not supported")
    },
    {
      name: "a head over 16 KiB",
      request: [`GET / HTTP/1.0\r\nX-Big: ${"a".repeat(17 * 1024)}\r\n\r\n`],
      expected: refused("431 Request Header Fields Too Large", "the request head may be at most 16384 bytes")
    },
    {
      name: "a body cut short by the client's FIN",
      request: ["POST / HTTP/1.0\r\nContent-Length: 10\r\n\r\nabc"],
      halfClose: true,
      expected: refused("400 Bad Request", "the body ended after 3 of 10 bytes")
    },
    {
      name: "a head cut short by the client's FIN",
      request: ["GET / HTTP/1.0\r\nHost: 127.0.0.1\r\n"],
      halfClose: true,
      expected: refused("400 Bad Request", "the request head ended before its blank line")
    }
  ]

  for (const { expected, halfClose, name, request } of refusals) {
    it.live(`${name} gets ${expected.slice(9, 12)} and a close, and the server goes on`, () =>
      serve((port) =>
        Effect.gen(function*() {
          expect(yield* rawExchange(port, request, { halfClose: halfClose ?? false })).toEqual({
            received: expected,
            serverClosed: true
          })
          expect(yield* rawExchange(port, ["GET /next HTTP/1.0\r\n\r\n"])).toEqual({
            received: answer("200 OK", "method: GET\npath: /next\n"),
            serverClosed: true
          })
        })
      ))
  }

  it.live("a head still incomplete at the frame timeout gets 408 and a close", () =>
    withServer(HttpServer, { ...serverOptions, frameTimeout: "200 millis" }, (port) =>
      Effect.gen(function*() {
        expect(yield* rawExchange(port, ["GET /slow HTTP/1.0\r\n", "Host: 127.0.0.1\r\n"])).toEqual({
          received: refused("408 Request Timeout", "the request arrived too slowly"),
          serverClosed: true
        })
      })))

  it.live("a client silent until the idle timeout gets 408 and a close", () =>
    withServer(HttpServer, { ...serverOptions, idleTimeout: "200 millis" }, (port) =>
      Effect.gen(function*() {
        expect(yield* rawExchange(port, [])).toEqual({
          received: refused("408 Request Timeout", "no request"),
          serverClosed: true
        })
      })))

  it.live("a client that connects and leaves without a word is closed quietly", () =>
    serve((port) =>
      Effect.gen(function*() {
        expect(yield* rawExchange(port, [], { halfClose: true })).toEqual({ received: "", serverClosed: true })
      })
    ))
})

/** The parts' tags, with each body piece's length. */
const summary = (parts: ReadonlyArray<RequestPart>) =>
  parts.map((part) => part._tag === "Body" ? `Body(${part.bytes.length})` : part._tag)

describe("the request machine", () => {
  const request = "POST /m HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 20000\r\n\r\n"
  const body = "b".repeat(20_000)
  const input = new TextEncoder().encode(`${request}${body}OVERSENT`)

  it.effect("cuts the same head, body pieces and end at every chunking", () =>
    Effect.gen(function*() {
      for (const size of [1, 2, 3, 7, 100, 4096, 16 * 1024, input.length]) {
        const parts = yield* Stream.fromIterable(chunkEvery(input, size)).pipe(
          Framing.decode(HttpRequest, { maxFrameLength: serverOptions.maxFrameLength }),
          Stream.runCollect
        )
        expect(summary(parts)).toEqual(["Head", "Body(16384)", "Body(3616)", "End"])
        expect(parts[0]).toEqual({
          _tag: "Head",
          head: { method: "POST", path: "/m", version: "1.1", contentLength: 20_000, expectsContinue: true }
        })
      }
    }))
})
