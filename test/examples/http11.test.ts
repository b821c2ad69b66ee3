/**
 * The http11 example end to end over TCP on 127.0.0.1: curl re-using one connection, raw `node:net` clients
 * that pipeline exact bytes (in one write, and a byte at a time), malformed requests, and wrk; plus the
 * request machine on its own, cut at every byte boundary.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Metric, Stream } from "effect"
import { Http11, Http11Requests, limits, type Message, serverOptions } from "../../examples/http11.ts"
import { ChatMetrics, Framing } from "../../src/index.ts"
import { bytes, chunkEvery, splitAt } from "../helpers.ts"
import { curl, wrk } from "../tools.ts"
import { rawExchange, type Refusal, runCurl, runProcess, withServer } from "./http-helpers.ts"

const curlTest = curl.available ? it.live : it.live.skip
const wrkTest = wrk.available ? it.live : it.live.skip

const serve = <A, E, R>(body: (port: number) => Effect.Effect<A, E, R>) =>
  withServer(Http11, serverOptions, (port) => body(port))

/** An IMF-fixdate, as the Date header carries it. */
const DATE =
  /Date: (?:Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d{2}:\d{2}:\d{2} GMT\r\n/g

/** The answers with their Date headers, which change every second, replaced by `Date: <date>`. */
const normalized = (received: string) => received.replaceAll(DATE, "Date: <date>\r\n")

/** The exact answer to GET (or HEAD, without its body) with the `Connection` header given, if any. */
const ok = (connection?: "close" | "keep-alive", options: { readonly head?: boolean } = {}) =>
  "HTTP/1.1 200 OK\r\n" +
  "Content-Type: text/plain\r\n" +
  "Content-Length: 11\r\n" +
  "Date: <date>\r\n" +
  (connection === undefined ? "" : `Connection: ${connection}\r\n`) +
  "\r\n" +
  (options.head === true ? "" : "hello world")

/** The exact answer with `status` (code and reason) and a body that says why. */
const answer = (status: string, detail: string, connection?: "close") => {
  const body = `${status}: ${detail}\n`
  return `HTTP/1.1 ${status}\r\n` +
    "Content-Type: text/plain\r\n" +
    `Content-Length: ${body.length}\r\n` +
    "Date: <date>\r\n" +
    (connection === undefined ? "" : `Connection: ${connection}\r\n`) +
    "\r\n" +
    body
}

const refused = (status: string, detail: string) => answer(status, detail, "close")

/** `rawExchange`, with the Date headers of what arrived normalized. */
const exchange = (
  port: number,
  pieces: ReadonlyArray<string | Uint8Array>,
  options: { readonly pauseMillis?: number; readonly halfClose?: boolean } = {}
) => Effect.map(rawExchange(port, pieces, options), (e) => ({ ...e, received: normalized(e.received) }))

/** Six pipelined requests, the last of which closes, and their answers in order. */
const pipelined = {
  requests: "GET /a HTTP/1.1\r\nHost: x\r\n\r\n" +
    "HEAD /b HTTP/1.1\r\nHost: x\r\n\r\n" +
    "POST /c HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
    "DELETE /d HTTP/1.1\r\nHost: x\r\n\r\n" +
    "GET /e HTTP/1.0\r\nConnection: keep-alive\r\n\r\n" +
    "POST /f HTTP/1.1\r\nhost: x\r\ncontent-length: 3\r\nConnection: Close\r\n\r\nabc",
  answers: ok() + ok(undefined, { head: true }) + ok() +
    answer("501 Not Implemented", "method DELETE") + ok("keep-alive") + ok("close")
}

/** A smaller set, sent a byte at a time. */
const small = {
  requests: "GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
    "HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" +
    "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi" +
    "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
  answers: ok() + ok(undefined, { head: true }) + ok() + ok("close")
}

describe("http11 with curl", () => {
  curlTest(
    `two requests on one keep-alive connection${curl.skipReason}`,
    () =>
      serve((port) =>
        Effect.gen(function*() {
          curl.require()
          const result = yield* runCurl("-v", `http://127.0.0.1:${port}/one`, `http://127.0.0.1:${port}/two`)
          expect(result.code).toBe(0)
          expect(result.stdout.toString("latin1")).toBe("hello worldhello world")
          // One connection opened, re-used for the second request, and left open after each.
          expect(result.stderr.match(/Connected to 127\.0\.0\.1/g)).toHaveLength(1)
          expect(result.stderr).toContain("Re-using existing connection")
          expect(result.stderr.match(/Connection #0 to host 127\.0\.0\.1 left intact/g)).toHaveLength(2)
          expect(result.stderr.match(/< HTTP\/1\.1 200 OK\r\n< Content-Type: text\/plain\r\n< Content-Length: 11/g))
            .toHaveLength(2)
        })
      )
  )

  curlTest(
    `HTTP/1.0: a connection per request, each closed after its answer${curl.skipReason}`,
    () =>
      serve((port) =>
        Effect.gen(function*() {
          curl.require()
          const result = yield* runCurl("-v", "--http1.0", `http://127.0.0.1:${port}/`, `http://127.0.0.1:${port}/`)
          expect(result.code).toBe(0)
          expect(result.stdout.toString("latin1")).toBe("hello worldhello world")
          expect(result.stderr.match(/Connected to 127\.0\.0\.1/g)).toHaveLength(2)
          expect(result.stderr).not.toContain("Re-using existing connection")
          expect(result.stderr.match(/< Connection: close/g)).toHaveLength(2)
        })
      )
  )
})

describe("http11 with a raw TCP client", () => {
  it.live("answers pipelined GET, HEAD, POST, DELETE requests in one write, in order, then closes", () =>
    serve((port) =>
      Effect.gen(function*() {
        expect(yield* exchange(port, [pipelined.requests])).toEqual({
          received: pipelined.answers,
          serverClosed: true
        })
      })
    ))

  it.live("answers the same bytes when the requests arrive a byte at a time", () =>
    serve((port) =>
      Effect.gen(function*() {
        expect(yield* exchange(port, chunkEvery(bytes(small.requests), 1), { pauseMillis: 1 })).toEqual({
          received: small.answers,
          serverClosed: true
        })
      })
    ))

  it.live("keeps an HTTP/1.1 connection open between requests, and an HTTP/1.0 one when asked", () =>
    serve((port) =>
      Effect.gen(function*() {
        // The second request is written well after the first answer: the connection outlived it.
        expect(
          yield* exchange(port, [
            "GET / HTTP/1.1\r\nHost: x\r\n\r\n",
            "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
            "GET / HTTP/1.0\r\n\r\n"
          ], { pauseMillis: 50 })
        ).toEqual({ received: ok() + ok("keep-alive") + ok("close"), serverClosed: true })
      })
    ))

  it.live("HTTP/1.0 without keep-alive is closed after its answer; HEAD has no body", () =>
    serve((port) =>
      Effect.gen(function*() {
        expect(yield* exchange(port, ["HEAD /x HTTP/1.0\r\n\r\n"])).toEqual({
          received: ok("close", { head: true }),
          serverClosed: true
        })
      })
    ))

  it.live("Expect: 100-continue gets its interim answer before the body is sent", () =>
    serve((port) =>
      Effect.gen(function*() {
        expect(
          yield* exchange(port, [
            "POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\nConnection: close\r\n\r\n",
            "hello"
          ])
        ).toEqual({ received: "HTTP/1.1 100 Continue\r\n\r\n" + ok("close"), serverClosed: true })
      })
    ))

  it.live("closes an idle keep-alive connection quietly at the idle timeout", () =>
    withServer(Http11, { ...serverOptions, idleTimeout: "200 millis" }, (port) =>
      Effect.gen(function*() {
        expect(yield* exchange(port, ["GET / HTTP/1.1\r\nHost: x\r\n\r\n"])).toEqual({
          received: ok(),
          serverClosed: true
        })
      })))

  const refusals: ReadonlyArray<Refusal> = [
    {
      name: "a malformed request line",
      request: ["GARBAGE\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed request line")
    },
    {
      name: "a request line with a space in the target",
      request: ["GET /a b HTTP/1.1\r\nHost: x\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed request line")
    },
    {
      name: "a header line without a colon",
      request: ["GET / HTTP/1.1\r\nHost x\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed header line")
    },
    {
      name: "a space before a header's colon",
      request: ["GET / HTTP/1.1\r\nHost : x\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed header line")
    },
    {
      name: "a bare LF inside a header",
      request: ["GET / HTTP/1.1\r\nHost: x\nX-B: 2\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed header line")
    },
    {
      name: "a folded header line",
      request: ["GET / HTTP/1.1\r\nHost: x\r\nX-A: 1\r\n 2\r\n\r\n"],
      expected: refused("400 Bad Request", "malformed header line")
    },
    {
      name: "an HTTP/1.1 request without Host",
      request: ["GET / HTTP/1.1\r\n\r\n"],
      expected: refused("400 Bad Request", "an HTTP/1.1 request needs one Host header")
    },
    {
      name: "a negative Content-Length",
      request: ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -5\r\n\r\n"],
      expected: refused("400 Bad Request", "Content-Length must be a decimal number")
    },
    {
      name: "a Content-Length that is not a number",
      request: ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1e3\r\n\r\n"],
      expected: refused("400 Bad Request", "Content-Length must be a decimal number")
    },
    {
      name: "conflicting Content-Length headers",
      request: ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!"],
      expected: refused("400 Bad Request", "conflicting Content-Length headers")
    },
    {
      name: "a Content-Length over 1 MiB",
      request: ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n"],
      expected: refused("413 Content Too Large", "the body may be at most 1048576 bytes")
    },
    {
      name: "a chunked body",
      request: ["POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"],
      expected: refused("501 Not Implemented", "Transfer-Encoding is not supported")
    },
    {
      name: "HTTP/2.0",
      request: ["GET / HTTP/2.0\r\nHost: x\r\n\r\n"],
      expected: refused("505 HTTP Version Not Supported", "only HTTP/1.0 and HTTP/1.1 are served")
    },
    {
      name: "a head over 8 KiB",
      request: [`GET / HTTP/1.1\r\nHost: x\r\nX-Big: ${"a".repeat(limits.maxHeadLength)}\r\n\r\n`],
      expected: refused("431 Request Header Fields Too Large", "the request head may be at most 8192 bytes")
    },
    {
      name: "a body cut short by the client's FIN",
      request: ["POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"],
      halfClose: true,
      expected: refused("400 Bad Request", "the body ended after 3 bytes")
    },
    {
      name: "a malformed request after a good one",
      request: [
        "GET /good HTTP/1.1\r\nHost: x\r\n\r\nGET /bad HTTP/1.1\r\nHost: x\r\nBad\r\n\r\nGET / HTTP/1.1\r\n\r\n"
      ],
      expected: ok() + refused("400 Bad Request", "malformed header line")
    }
  ]

  for (const { expected, halfClose, name, request } of refusals) {
    it.live(`${name} gets ${[...expected.matchAll(/HTTP\/1\.1 (\d{3})/g)].at(-1)![1]} and a close; the server goes on`, () =>
      serve((port) =>
        Effect.gen(function*() {
          expect(yield* exchange(port, request, { halfClose: halfClose ?? false })).toEqual({
            received: expected,
            serverClosed: true
          })
          expect(yield* exchange(port, ["GET /next HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"])).toEqual({
            received: ok("close"),
            serverClosed: true
          })
        })
      ))
  }
})

describe("http11 under wrk", () => {
  wrkTest(
    `wrk -t1 -c20 -d1s: many requests, no socket errors, every answer 200${wrk.skipReason}`,
    () =>
      serve((port) =>
        Effect.gen(function*() {
          wrk.require()
          const failures = Effect.map(
            Effect.all(
              ["WriteFailed", "ReadFailed"].map((reason) =>
                Metric.value(Metric.withAttributes(ChatMetrics.errors, { reason }))
              )
            ),
            (states) => states.reduce((sum, state) => sum + state.count, 0)
          )
          const failedBefore = yield* failures
          const result = yield* runProcess("wrk", ["-t1", "-c20", "-d1s", `http://127.0.0.1:${port}/`], {
            timeout: "15 seconds"
          })
          const report = result.stdout.toString()
          expect(result.code, report + result.stderr).toBe(0)
          const requests = Number(/(\d+) requests in /.exec(report)?.[1])
          expect(requests).toBeGreaterThan(100)
          // wrk prints these lines only when something went wrong.
          expect(report).not.toMatch(/Socket errors|Non-2xx or 3xx responses/)
          // wrk read an answer's length per request it counted (its byte figure is rounded): nothing more.
          const read = /requests in [\d.]+m?s, ([\d.]+)(B|KB|MB) read/.exec(report)
          const unit = { B: 1, KB: 1024, MB: 1024 * 1024 }[read![2] as "B" | "KB" | "MB"]
          expect(Number(read![1]) * unit / requests).toBeCloseTo(ok().replace("<date>", "x".repeat(29)).length, 0)
          // wrk hanging up its 20 connections at the end is their normal end, not 20 failures
          yield* Effect.sleep("200 millis")
          expect((yield* failures) - failedBefore).toBe(0)
        })
      )
  )
})

/** The messages, as `Method target version keepAlive/close +length`, `100`, or the error's status. */
const decodeAll = (chunks: ReadonlyArray<Uint8Array>) =>
  Stream.fromIterable(chunks).pipe(
    Framing.decode(Http11Requests, { maxFrameLength: limits.maxHeadLength }),
    Stream.map((message: Message) =>
      message._tag === "Continue"
        ? "100"
        : `${message.method} ${message.target} ${message.version} ${
          message.keepAlive ? "keep" : "close"
        } +${message.contentLength}`
    ),
    Stream.runCollect
  )

describe("the request machine", () => {
  const input = bytes(pipelined.requests)
  const expected = [
    "GET /a 1.1 keep +0",
    "HEAD /b 1.1 keep +0",
    "POST /c 1.1 keep +5",
    "DELETE /d 1.1 keep +0",
    "GET /e 1.0 keep +0",
    "POST /f 1.1 close +3"
  ]

  it.effect("cuts the same requests however the bytes are split: every boundary, every byte", () =>
    Effect.gen(function*() {
      for (let cut = 0; cut <= input.length; cut++) expect(yield* decodeAll(splitAt(input, [cut]))).toEqual(expected)
      expect(yield* decodeAll(chunkEvery(input, 1))).toEqual(expected)
    }))

  it.effect("emits 100 Continue before the body of a request that expects it, and ignores input after a close", () =>
    Effect.gen(function*() {
      const messages = yield* decodeAll([
        bytes("POST /up HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 20000\r\n\r\n"),
        bytes("b".repeat(20_000)),
        bytes("\r\nGET / HTTP/1.0\r\n\r\nNOT HTTP AT ALL\r\n\r\n")
      ])
      expect(messages).toEqual(["100", "POST /up 1.1 keep +20000", "GET / 1.0 close +0"])
    }))
})
