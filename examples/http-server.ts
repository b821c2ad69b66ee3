/**
 * http-server — the asynchat HTTP request handler (seeds 000 and 004): the head is cut at `\r\n\r\n`; for a
 * POST, `Content-Length` becomes a byte-count terminator; then `Terminator.none`, so bytes a client over-sends
 * are ignored; the answer goes out once all input is in: the method and path, and for a POST the body's length,
 * SHA-256 and, when short, the body itself. HTTP/1.0: one request per connection, `Connection: close`.
 *
 * A `Framing.machine` rather than `AsyncChat.make`: the seed keeps its parse state on `self`
 * (`reading_headers`, the headers, the body so far); a machine's state is exactly that, per connection and
 * pure, so the parser is tested without a socket, where `foundTerminator` has only the current terminator.
 *
 * Limits: the head is one frame of at most 16 KiB (`maxFrameLength`, else 431); the body, up to 16 MiB (else
 * 413), is counted down from `Content-Length` in pieces of at most that size and hashed as it comes, so it
 * never sits in memory whole; a frame must complete within 10 seconds of its first byte (else 408). A bad
 * request gets its status and a close, never a crash: 400 (malformed head, bad `Content-Length`, body cut
 * short), 411 (POST without `Content-Length`), 501 (a method but GET, HEAD, POST; a `Transfer-Encoding`), 505.
 * An HTTP/1.1 client's `Expect: 100-continue` is answered at once, so curl sends a large body without waiting.
 *
 * Try it: npm start -- http-server --port 8000, then: curl -i http://127.0.0.1:8000/hello -d 'name=kongxx'
 */
import { Data, Effect, Stream } from "effect"
import { Chat, type ChatServer, Framing, Protocol, Terminator } from "effect-asynchat"
import { Command } from "effect/cli"
import { Buffer } from "node:buffer"
import * as Crypto from "node:crypto"
import * as Shared from "./shared.ts"

/** The bounds of one request. */
export const limits = {
  /** The request head, and each piece of the body: one frame. */
  maxFrameLength: 16 * 1024,
  /** The largest `Content-Length` accepted. */
  maxBodyLength: 16 * 1024 * 1024,
  /** A body up to this long is echoed in the answer. */
  maxEchoLength: 1024
} as const

/** How the server runs: frames bounded for the head, and slow clients cut off. */
export const serverOptions: ChatServer.Options = {
  maxFrameLength: limits.maxFrameLength,
  frameTimeout: "10 seconds",
  idleTimeout: "30 seconds"
}

/** What the request head says, once checked. */
export interface RequestHead {
  readonly method: "GET" | "HEAD" | "POST"
  readonly path: string
  readonly version: "1.0" | "1.1"
  /** 0 unless a POST. */
  readonly contentLength: number
  /** An HTTP/1.1 client waits for `100 Continue` before it sends the body. */
  readonly expectsContinue: boolean
}

/** What the machine emits: the head, the body in pieces, then the end of the request. */
export type RequestPart =
  | { readonly _tag: "Head"; readonly head: RequestHead }
  | { readonly _tag: "Body"; readonly bytes: Uint8Array }
  | { readonly _tag: "End" }

/** A request the server refuses, with the status it answers. */
export class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number; readonly detail: string }> {}

const reasons: Record<number, string> = {
  200: "OK",
  400: "Bad Request",
  408: "Request Timeout",
  411: "Length Required",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  501: "Not Implemented",
  505: "HTTP Version Not Supported"
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/
const REQUEST_LINE = /^(\S+) (\S+) HTTP\/(\d+\.\d+)$/
const HEADER = /^([^:]*):[ \t]*(.*?)[ \t]*$/
/** A request target in origin form, printable ASCII only (curl percent-encodes the rest). */
const PATH = /^\/[\x21-\x7e]*$/
/** Control characters but HTAB: a bare CR or LF inside the head is a smuggling vector, not a line end. */
// oxlint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\x00-\x08\x0a-\x1f\x7f]/

const bad = (detail: string) => new HttpError({ status: 400, detail })

/** Parses a request head (without its blank line) or says why not. Pure: the machine's `step` calls it. */
export const parseHead = (bytes: Uint8Array): RequestHead | HttpError => {
  // latin1: one char per byte, so no byte is lost or merged before the checks below.
  const [requestLine, ...lines] = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)
    .toString("latin1")
    .split("\r\n")
  const request = REQUEST_LINE.exec(requestLine)
  if (request === null) return bad("malformed request line")
  const [, method, path, version] = request
  if (!TOKEN.test(method)) return bad("malformed method")
  if (!PATH.test(path)) return bad("the path must start with / and be printable ASCII")
  if (version !== "1.0" && version !== "1.1") {
    return new HttpError({ status: 505, detail: `HTTP/${version} is not supported` })
  }
  if (method !== "GET" && method !== "HEAD" && method !== "POST") {
    return new HttpError({ status: 501, detail: `method ${method} is not supported` })
  }
  const headers: Array<readonly [string, string]> = []
  for (const line of lines) {
    const header = HEADER.exec(line)
    if (header === null || !TOKEN.test(header[1]) || CONTROL.test(header[2])) return bad("malformed header line")
    headers.push([header[1].toLowerCase(), header[2]])
  }
  const valuesOf = (name: string) => headers.filter(([n]) => n === name).map(([, value]) => value)
  const expectsContinue = version === "1.1" && valuesOf("expect").some((v) => v.toLowerCase() === "100-continue")
  if (method !== "POST") return { method, path, version, contentLength: 0, expectsContinue: false }

  if (valuesOf("transfer-encoding").length > 0) {
    return new HttpError({ status: 501, detail: "Transfer-Encoding is not supported: send Content-Length" })
  }
  const lengths = valuesOf("content-length")
  if (lengths.length === 0) return new HttpError({ status: 411, detail: "a POST needs a Content-Length" })
  if (!lengths.every((value) => /^\d+$/.test(value))) return bad("Content-Length must be a decimal number")
  if (lengths.some((value) => value !== lengths[0])) return bad("conflicting Content-Length headers")
  // Compared as text first: a number of 16 digits or more is over the limit, and may not fit a double exactly.
  const contentLength = lengths[0].length > 15 ? Number.POSITIVE_INFINITY : Number(lengths[0])
  if (contentLength > limits.maxBodyLength) {
    return new HttpError({ status: 413, detail: `the body may be at most ${limits.maxBodyLength} bytes` })
  }
  return { method, path, version, contentLength, expectsContinue: expectsContinue && contentLength > 0 }
}

type State =
  | { readonly _tag: "Head" }
  | { readonly _tag: "Body"; readonly length: number; readonly remaining: number }
  | { readonly _tag: "Ignore" }

const HEAD_END = Terminator.delimiter("\r\n\r\n")
const IGNORE: State = { _tag: "Ignore" }
const END: RequestPart = { _tag: "End" }

const shortBody = (state: { readonly length: number; readonly remaining: number }) =>
  bad(`the body ended after ${state.length - state.remaining} of ${state.length} bytes`)

/**
 * The seed's `found_terminator`: the head up to `\r\n\r\n`; for a POST, the body counted down from
 * `Content-Length` in pieces of at most `maxFrameLength`; then `Terminator.none`, whatever else arrives ignored.
 */
export const HttpRequest = Framing.machine<State, RequestPart, HttpError>({
  initial: { _tag: "Head" },
  terminator: (state) => {
    switch (state._tag) {
      case "Head":
        return HEAD_END
      case "Body":
        return Terminator.length(Math.min(state.remaining, limits.maxFrameLength))
      case "Ignore":
        return Terminator.none
    }
  },
  step: (state, frame) => {
    switch (state._tag) {
      case "Head": {
        if (!frame.terminated) return Framing.fail(bad("the request head ended before its blank line"))
        const head = parseHead(frame.bytes)
        if (head instanceof HttpError) return Framing.fail(head)
        const part = { _tag: "Head", head } as const
        return head.contentLength === 0
          ? Framing.next<State, RequestPart>(IGNORE, part, END)
          : Framing.next({ _tag: "Body", length: head.contentLength, remaining: head.contentLength }, part)
      }
      case "Body": {
        const next = { ...state, remaining: state.remaining - frame.bytes.length }
        if (!frame.terminated) return Framing.fail(shortBody(next))
        const part = { _tag: "Body", bytes: frame.bytes } as const
        return next.remaining === 0 ? Framing.next<State, RequestPart>(IGNORE, part, END) : Framing.next(next, part)
      }
      case "Ignore":
        return Framing.next(state) // browsers sometimes over-send
    }
  },
  end: (state) => (state._tag === "Body" ? Framing.fail(shortBody(state)) : Framing.next(state))
})

/** An HTTP/1.0 answer that closes the connection; `bodyLength` differs from the body's only for HEAD. */
const response = (status: number, body: Uint8Array, bodyLength = body.length): Array<Uint8Array | string> => [
  `HTTP/1.0 ${status} ${reasons[status]}\r\n`,
  "Server: effect-asynchat\r\n",
  "Content-Type: text/plain; charset=utf-8\r\n",
  `Content-Length: ${bodyLength}\r\n`,
  "Connection: close\r\n",
  "\r\n",
  body
]

const refusal = (status: number, detail: string) =>
  Chat.push(...response(status, Buffer.from(`${status} ${reasons[status]}: ${detail}\n`)))

/** What the answer reports about a request. */
const report = (
  head: RequestHead,
  body: { readonly length: number; readonly sha256: string; readonly echo?: Buffer }
) => {
  const lines = [`method: ${head.method}\n`, `path: ${head.path}\n`]
  if (head.method === "POST") lines.push(`body-length: ${body.length}\n`, `body-sha256: ${body.sha256}\n`)
  const text = Buffer.from(lines.join(""))
  return body.echo === undefined ? text : Buffer.concat([text, Buffer.from("body: "), body.echo, Buffer.from("\n")])
}

/**
 * Answers one request, then closes when done. The body is hashed piece by piece as it arrives (the seed's
 * `ibuffer`, without keeping it); a refused request is answered with its status before the close.
 */
export const HttpServer = Protocol.make(HttpRequest, (parts) => {
  // This function runs once per connection: its locals are that connection's state.
  let head: RequestHead | undefined = undefined
  let received = 0
  const digest = Crypto.createHash("sha256")
  const echo: Array<Uint8Array> = []
  const answer = Effect.suspend(() => {
    if (head === undefined) return Effect.void
    const body = report(head, {
      length: received,
      sha256: digest.digest("hex"),
      ...(head.method === "POST" && received <= limits.maxEchoLength ? { echo: Buffer.concat(echo) } : {})
    })
    return head.method === "HEAD"
      ? Chat.push(...response(200, new Uint8Array(0), body.length))
      : Chat.push(...response(200, body))
  })
  return parts.pipe(
    Stream.takeUntil((part) => part._tag === "End"),
    Stream.runForEach((part) => {
      switch (part._tag) {
        case "Head":
          head = part.head
          return head.expectsContinue ? Chat.push("HTTP/1.1 100 Continue\r\n\r\n") : Effect.void
        case "Body":
          received += part.bytes.length
          digest.update(part.bytes)
          // Pieces are views of the input; the few kept for the echo are copied.
          if (received <= limits.maxEchoLength) echo.push(Uint8Array.prototype.slice.call(part.bytes))
          return Effect.void
        case "End":
          return answer
      }
    }),
    Effect.catchTag("HttpError", (error) => refusal(error.status, error.detail)),
    Effect.catchReasons("ChatError", {
      FrameTooLong: () => refusal(431, `the request head may be at most ${limits.maxFrameLength} bytes`),
      FrameTimeout: () => refusal(408, "the request arrived too slowly"),
      IdleTimeout: () => refusal(408, "no request")
    }),
    Effect.andThen(Chat.closeWhenDone)
  )
})

/** Runs the HTTP server on `host:port`. */
export const run = (options: Shared.ServerFlags) =>
  Shared.serveTcp(HttpServer, {
    ...options,
    name: "http-server",
    tryIt: (host, port) => [
      `curl -i http://${host}:${port}/hello`,
      `curl -i http://${host}:${port}/form -d 'name=kongxx'`
    ],
    server: Shared.withLimits(serverOptions, options)
  })

/** `npm start -- http-server [--host H] [--port N]` */
export const command = Command.make("http-server", Shared.serverFlags(8000, serverOptions), run).pipe(
  Shared.withTelemetry,
  Command.withDescription("asynchat's HTTP request handler: GET, HEAD, and POST with a Content-Length body")
)
