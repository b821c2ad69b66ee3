/**
 * http11 — an HTTP/1.1 server with keep-alive and pipelining that answers `hello world`: a benchmark subject
 * (wrk against it, beside node:http), written with the framework's fast paths. A `Framing.machine` cuts each
 * request head as one frame at `\r\n\r\n` and parses it with plain string scans, reads a `Content-Length` body
 * with a byte-count terminator, then goes back to the head; the handler pushes one precomputed answer per
 * request, in order, and the framework coalesces the answers to pipelined requests into one write.
 *
 * HTTP/1.1 stays open unless the client says `Connection: close`; HTTP/1.0 closes after its answer unless it
 * says `Connection: keep-alive`. GET, HEAD (no body) and POST (its body read and ignored) get 200; any other
 * method 501, and the connection goes on. Malformed input gets its refusal and a close: 400 (request line,
 * header line, Content-Length, Host), 413 (a body over 1 MiB), 431 (a head over 8 KiB), 501
 * (Transfer-Encoding), 505 (an HTTP version but 1.0 and 1.1), 408 (a head or body piece stalled 10 seconds).
 * An idle keep-alive connection is closed quietly after a minute. On a graceful shutdown a connection answers
 * what it has read and closes (one caught mid-batch says `Connection: close` in its next answer, its last); an
 * idle one is closed at once.
 *
 * Try it: npm start -- http11 --port 8081, then: curl -v http://127.0.0.1:8081/ http://127.0.0.1:8081/ (the
 * second request re-uses the connection), or: wrk -t1 -c50 -d5s http://127.0.0.1:8081/. On every core:
 * npm start -- http11 --port 8081 --workers $(nproc).
 */
import { Data, Effect } from "effect"
import { Chat, ChatServer, Framing, Protocol, Terminator } from "effect-asynchat"
import { Command } from "effect/cli"
import { flow } from "effect/Function"
import { Buffer } from "node:buffer"
import * as Shared from "./shared.ts"

/** The bounds of one request. */
export const limits = {
  /** The request head is one frame; body pieces are at most this long too. */
  maxHeadLength: 8 * 1024,
  /** The largest `Content-Length` accepted. */
  maxBodyLength: 1024 * 1024
} as const

/** How the server runs: heads bounded, slow requests cut off, idle keep-alive clients tolerated a while. */
export const serverOptions: ChatServer.Options = {
  maxFrameLength: limits.maxHeadLength,
  frameTimeout: "10 seconds",
  idleTimeout: "1 minute"
}

/** A request, once its body (if any) was read. */
export interface Request {
  readonly _tag: "Request"
  /** GET, HEAD, POST, or any other token (answered 501). */
  readonly method: string
  readonly target: string
  readonly version: "1.0" | "1.1"
  /** Whether the connection stays open after the answer. */
  readonly keepAlive: boolean
  /** The body's length; its bytes are read and dropped. */
  readonly contentLength: number
  /** `Expect: 100-continue` with a body: the client waits for an interim answer before it sends the body. */
  readonly expectsContinue: boolean
}

/** The interim `100 Continue`, emitted when the head asks for it, before the body is read. */
export interface Continue {
  readonly _tag: "Continue"
}

export type Message = Request | Continue

/** A request the server refuses, with the status it answers before it closes. */
export class HttpError extends Data.TaggedError("HttpError")<{ readonly status: number; readonly detail: string }> {}

const bad = (detail: string) => new HttpError({ status: 400, detail })

const reasons: Record<number, string> = {
  100: "Continue",
  200: "OK",
  400: "Bad Request",
  408: "Request Timeout",
  413: "Content Too Large",
  431: "Request Header Fields Too Large",
  501: "Not Implemented",
  505: "HTTP Version Not Supported"
}

// Parsing: the head's bytes scanned in place; a string is made only of what is kept (the target) or is rare
// (a list header's value).

/** RFC 9110 token characters, by byte. */
const TOKEN = new Uint8Array(256)
for (const c of "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz") {
  TOKEN[c.charCodeAt(0)] = 1
}

const SP = 0x20
const HTAB = 0x09
const CR = 0x0d
const LF = 0x0a

const latin1 = (bytes: Uint8Array): string =>
  (Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength)).toString("latin1")

/** Where the next CRLF at or after `from` starts, or -1. A loop, not `indexOf`: a head's lines are short. */
const crlfFrom = (b: Uint8Array, from: number): number => {
  for (let i = from; i + 1 < b.length; i++) if (b[i] === CR && b[i + 1] === LF) return i
  return -1
}

/** Where the next space in `b[from, to)` is, or -1. */
const spaceFrom = (b: Uint8Array, from: number, to: number): number => {
  for (let i = from; i < to; i++) if (b[i] === SP) return i
  return -1
}

/** Whether `b[from, from + text.length)` is `text`. */
const startsWith = (b: Uint8Array, from: number, text: string): boolean => {
  if (from + text.length > b.length) return false
  for (let i = 0; i < text.length; i++) if (b[from + i] !== text.charCodeAt(i)) return false
  return true
}

/** Whether `b[from, from + lower.length)` is `lower`, ignoring ASCII case (`lower` is letters and `-` only). */
const equalsLower = (b: Uint8Array, from: number, lower: string): boolean => {
  for (let i = 0; i < lower.length; i++) {
    if ((b[from + i] | 0x20) !== lower.charCodeAt(i)) return false
  }
  return true
}

/** Whether the comma-separated list `b[from, to)` has `lower` as one of its elements, ignoring case. */
const listHas = (b: Uint8Array, from: number, to: number, lower: string): boolean => {
  for (const element of latin1(b.subarray(from, to)).split(",")) {
    if (element.trim().toLowerCase() === lower) return true
  }
  return false
}

/** A decimal of digits only: its value (Infinity past 15 digits, which no limit here allows), or -1. */
const decimal = (s: string): number => {
  if (s.length === 0) return -1
  let n = 0
  for (let i = 0; i < s.length; i++) {
    const d = s.charCodeAt(i) - 48
    if (d < 0 || d > 9) return -1
    n = n * 10 + d
  }
  return s.length > 15 ? Number.POSITIVE_INFINITY : n
}

/** The method as a shared constant when it is one served, so a request allocates no string for it. */
const methodOf = (b: Uint8Array, from: number, to: number): string => {
  const n = to - from
  if (n === 3 && startsWith(b, from, "GET")) return "GET"
  if (n === 4 && startsWith(b, from, "HEAD")) return "HEAD"
  if (n === 4 && startsWith(b, from, "POST")) return "POST"
  return latin1(b.subarray(from, to))
}

/**
 * Parses a request head (its bytes, without the blank line), or says why not. Pure: the machine's `step` calls
 * it.
 * @example
 * ```ts
 * parseHead(Buffer.from("GET / HTTP/1.1\r\nHost: example.com")) // { _tag: "Request", method: "GET", ... }
 * ```
 */
export const parseHead = (head: Uint8Array): Request | HttpError => {
  const length = head.length
  let start = 0
  // RFC 9112 §2.2: empty lines before a request line are ignored (some clients send CRLF after a body).
  while (head[start] === CR && head[start + 1] === LF) start += 2
  let lineEnd = crlfFrom(head, start)
  if (lineEnd < 0) lineEnd = length

  // method SP request-target SP HTTP-version
  const sp1 = spaceFrom(head, start, length)
  const sp2 = sp1 < 0 ? -1 : spaceFrom(head, sp1 + 1, length)
  if (sp1 <= start || sp2 <= sp1 + 1 || sp2 >= lineEnd) return bad("malformed request line")
  for (let i = start; i < sp1; i++) if (TOKEN[head[i]] === 0) return bad("malformed request line")
  for (let i = sp1 + 1; i < sp2; i++) {
    const c = head[i]
    if (c <= SP || c >= 0x7f) return bad("malformed request line")
  }
  let version: "1.0" | "1.1"
  if (lineEnd - sp2 === 9 && startsWith(head, sp2 + 1, "HTTP/1.1")) version = "1.1"
  else if (lineEnd - sp2 === 9 && startsWith(head, sp2 + 1, "HTTP/1.0")) version = "1.0"
  else if (/^HTTP\/\d\.\d$/.test(latin1(head.subarray(sp2 + 1, lineEnd)))) {
    return new HttpError({ status: 505, detail: "only HTTP/1.0 and HTTP/1.1 are served" })
  } else return bad("malformed request line")

  // Header lines: a token, a colon, a value without control characters (a bare CR or LF smuggles requests).
  let hosts = 0
  let contentLength = -1
  let close = false
  let keepAlive = false
  let expectsContinue = false
  let chunked = false
  let pos = lineEnd + 2
  while (pos < length) {
    let end = crlfFrom(head, pos)
    if (end < 0) end = length
    let colon = pos
    while (colon < end && TOKEN[head[colon]] === 1) colon++
    if (colon === pos || colon === end || head[colon] !== 0x3a) return bad("malformed header line")
    let from = colon + 1
    let to = end
    for (let i = from; i < to; i++) {
      const c = head[i]
      if ((c < SP && c !== HTAB) || c === 0x7f) return bad("malformed header line")
    }
    while (from < to && (head[from] === SP || head[from] === HTAB)) from++
    while (to > from && (head[to - 1] === SP || head[to - 1] === HTAB)) to--
    // Only four names matter; their lengths tell them apart before any comparison.
    switch (colon - pos) {
      case 4:
        if (equalsLower(head, pos, "host")) hosts++
        break
      case 6:
        if (equalsLower(head, pos, "expect")) expectsContinue = listHas(head, from, to, "100-continue")
        break
      case 10:
        if (equalsLower(head, pos, "connection")) {
          close ||= listHas(head, from, to, "close")
          keepAlive ||= listHas(head, from, to, "keep-alive")
        }
        break
      case 14:
        if (equalsLower(head, pos, "content-length")) {
          // A list of equal values (`5, 5`) is one length (RFC 9110 §8.6); anything else is refused.
          for (const element of latin1(head.subarray(from, to)).split(",")) {
            const n = decimal(element.trim())
            if (n < 0) return bad("Content-Length must be a decimal number")
            if (contentLength >= 0 && n !== contentLength) return bad("conflicting Content-Length headers")
            contentLength = n
          }
        }
        break
      case 17:
        if (equalsLower(head, pos, "transfer-encoding")) chunked = true
        break
    }
    pos = end + 2
  }
  // Without framing for a chunked body the rest of the input cannot be read: refused, and the connection closed.
  if (chunked) return new HttpError({ status: 501, detail: "Transfer-Encoding is not supported" })
  if (hosts > 1 || (version === "1.1" && hosts === 0)) return bad("an HTTP/1.1 request needs one Host header")
  if (contentLength > limits.maxBodyLength) {
    return new HttpError({ status: 413, detail: `the body may be at most ${limits.maxBodyLength} bytes` })
  }
  const bodyLength = contentLength < 0 ? 0 : contentLength
  return {
    _tag: "Request",
    method: methodOf(head, start, sp1),
    target: latin1(head.subarray(sp1 + 1, sp2)),
    version,
    keepAlive: !close && (version === "1.1" || keepAlive),
    contentLength: bodyLength,
    expectsContinue: expectsContinue && version === "1.1" && bodyLength > 0
  }
}

type State =
  | { readonly _tag: "Head" }
  | { readonly _tag: "Body"; readonly request: Request; readonly remaining: number }
  | { readonly _tag: "Closing" }

const HEAD: State = { _tag: "Head" }
/** After a request that closes the connection: whatever else the client sends is ignored. */
const CLOSING: State = { _tag: "Closing" }
const HEAD_END = Terminator.delimiter("\r\n\r\n")
const CONTINUE: Continue = { _tag: "Continue" }

/** Only CR and LF: what a client may leave after its last request before it closes. */
const blank = (bytes: Uint8Array): boolean => bytes.every((b) => b === 0x0d || b === 0x0a)

/** After a request: the next head, or nothing more if it closes the connection. */
const after = (request: Request): State => (request.keepAlive ? HEAD : CLOSING)

/**
 * Requests: the head up to `\r\n\r\n`; for a `Content-Length`, the body counted down in pieces of at most
 * `maxHeadLength` (a count over the connection's frame limit would fail), then the next head.
 */
export const Http11Requests = Framing.machine<State, Message, HttpError>({
  initial: HEAD,
  terminator: (state) => {
    switch (state._tag) {
      case "Head":
        return HEAD_END
      case "Body":
        return Terminator.length(Math.min(state.remaining, limits.maxHeadLength))
      case "Closing":
        return Terminator.none
    }
  },
  step: (state, frame) => {
    switch (state._tag) {
      case "Head": {
        if (!frame.terminated) {
          return blank(frame.bytes)
            ? Framing.next(state)
            : Framing.fail(bad("the request head ended before its blank line"))
        }
        if (frame.bytes.length === 0) return Framing.next(state) // a stray CRLF pair between requests
        const request = parseHead(frame.bytes)
        if (request instanceof HttpError) return Framing.fail(request)
        if (request.contentLength === 0) return Framing.next<State, Message>(after(request), request)
        const body: State = { _tag: "Body", request, remaining: request.contentLength }
        return request.expectsContinue ? Framing.next<State, Message>(body, CONTINUE) : Framing.next(body)
      }
      case "Body": {
        const remaining = state.remaining - frame.bytes.length
        if (!frame.terminated) {
          return Framing.fail(bad(`the body ended after ${state.request.contentLength - remaining} bytes`))
        }
        return remaining === 0
          ? Framing.next<State, Message>(after(state.request), state.request)
          : Framing.next({ _tag: "Body", request: state.request, remaining })
      }
      case "Closing":
        return Framing.next(state)
    }
  },
  end: (state) =>
    state._tag === "Body"
      ? Framing.fail(bad(`the body ended after ${state.request.contentLength - state.remaining} bytes`))
      : Framing.next(state)
})

// Answers: whole responses as bytes, made once a second (their Date header) and pushed as they are.

const BODY = "hello world"

/** A whole response; `withBody` false for HEAD, whose headers still describe the body. */
const response = (
  status: number,
  date: string,
  connection: "" | "keep-alive" | "close",
  body: string,
  withBody = true
): Buffer =>
  Buffer.from(
    `HTTP/1.1 ${status} ${reasons[status]}\r\n` +
      "Content-Type: text/plain\r\n" +
      `Content-Length: ${body.length}\r\n` +
      `Date: ${date}\r\n` +
      (connection === "" ? "" : `Connection: ${connection}\r\n`) +
      "\r\n" +
      (withBody ? body : ""),
    "latin1"
  )

/** The `Connection` header an answer needs: none when the version implies it. */
const connectionOf = (request: Request, close: boolean): "" | "keep-alive" | "close" =>
  close ? "close" : request.version === "1.0" ? "keep-alive" : ""

/**
 * The hello-world answers, rebuilt when the second changes, so a request costs a table lookup: index
 * `2 * kind + (HEAD ? 1 : 0)`, kind 0 for an HTTP/1.1 keep-alive, 1 for an HTTP/1.0 keep-alive, 2 for a close.
 * Module state, like Node's own date cache: every server in the process shares it.
 */
const cache = { second: -1, date: "", answers: [] as Array<Buffer> }

const answersAt = (millis: number): Array<Buffer> => {
  const second = Math.floor(millis / 1000)
  if (second !== cache.second) {
    const date = new Date(second * 1000).toUTCString() // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    cache.second = second
    cache.date = date
    cache.answers = ["", "keep-alive", "close"].flatMap((connection) => [
      response(200, date, connection as "" | "keep-alive" | "close", BODY),
      response(200, date, connection as "" | "keep-alive" | "close", BODY, false)
    ])
  }
  return cache.answers
}

const CONTINUE_BYTES = Buffer.from("HTTP/1.1 100 Continue\r\n\r\n", "latin1")

/** The bytes that answer one message; `close`: the connection closes after it. */
const answerOf = (message: Message, answers: Array<Buffer>, close: boolean): Uint8Array => {
  if (message._tag === "Continue") return CONTINUE_BYTES
  const kind = close ? 4 : message.version === "1.0" ? 2 : 0
  switch (message.method) {
    case "GET":
    case "POST":
      return answers[kind]
    case "HEAD":
      return answers[kind + 1]
    default:
      return response(501, cache.date, connectionOf(message, close), `501 Not Implemented: method ${message.method}\n`)
  }
}

/** Answers pushed together, between two looks at the output's room and the server's shutdown. */
const GROUP = 64

/**
 * Answers a batch of messages in order, in groups of up to `GROUP`. Before each group it waits for room in the
 * output (a push of nothing waits as a push would: until a client that pipelines without reading has taken
 * enough), then asks whether a shutdown began (`isDraining`), and only then queues the group without waiting
 * (`offer`, sure to fit after that wait). So every wait comes before an answer that can say so: once a shutdown
 * began, the next answer says `Connection: close` and is the last; the client sends no more on this connection,
 * and resends what it pipelined beyond it (RFC 9112, section 9.6). Queued output stays under the high-water
 * mark plus one group. A shutdown that begins between batches ends the input there, and the connection closes
 * after its answers.
 */
const answerAll = (
  chat: Chat.ChatShape,
  server: ChatServer.ChatServerShape,
  messages: ReadonlyArray<Message>,
  from: number
): Effect.Effect<void> =>
  Effect.flatMap(Effect.andThen(chat.push(), server.isDraining), (draining) => {
    const answers = answersAt(Date.now())
    const out: Array<Uint8Array> = []
    const end = Math.min(messages.length, from + GROUP)
    for (let i = from; i < end; i++) {
      const message = messages[i]
      const close = message._tag === "Request" && (!message.keepAlive || draining)
      out.push(answerOf(message, answers, close))
      if (close) return Effect.andThen(chat.push(...out), chat.closeWhenDone)
    }
    // `offer` refuses only past the output limit, or once the connection is closing (a push drops it too)
    const queued = Effect.flatMap(chat.offer(...out), (fits) => fits ? Effect.void : chat.push(...out))
    return end === messages.length ? queued : Effect.andThen(queued, answerAll(chat, server, messages, end))
  })

/** Answers a refused request, then the connection closes (the handler returns). */
const refuse = (status: number, detail: string) =>
  Effect.suspend(() => {
    answersAt(Date.now()) // the Date of the refusal
    return Chat.push(response(status, cache.date, "close", `${status} ${reasons[status]}: ${detail}\n`))
  })

/**
 * The server: every request answered in order, the requests of one read together (`Protocol.forEachBatch`); a
 * refusal or the end of input ends the connection.
 */
export const Http11 = Protocol.forEachBatch(
  Http11Requests,
  // the connection's handle and the server, taken once per connection
  Effect.gen(function*() {
    const chat = yield* Chat.Chat
    const server = yield* ChatServer.ChatServer
    return (batch: ReadonlyArray<Message>) => answerAll(chat, server, batch, 0)
  })
).pipe(
  Protocol.mapHandler(
    flow(
      Effect.catchTag("HttpError", (error) => refuse(error.status, error.detail)),
      Effect.catchReasons("ChatError", {
        FrameTooLong: () => refuse(431, `the request head may be at most ${limits.maxHeadLength} bytes`),
        FrameTimeout: () => refuse(408, "the request arrived too slowly"),
        // Idle keep-alive connections are normal; after a while they are closed without a word.
        IdleTimeout: () => Effect.void,
        // A client may reset rather than close (wrk does, at its end): it is gone, nothing to answer or log.
        ReadFailed: () => Effect.void
      })
    )
  )
)

/** Runs the server on `host:port`, in this process or (`--workers n`) in n worker processes. */
export const run = (options: Shared.ServerFlags & Shared.WorkersFlag) =>
  Shared.serveTcp(Http11, {
    ...options,
    name: "http11",
    tryIt: (host, port, tls) =>
      tls === undefined
        ? [`curl -v http://${host}:${port}/ http://${host}:${port}/`, `wrk -t1 -c50 -d5s http://${host}:${port}/`]
        : [
          `curl --cacert ${tls.cert} https://${host}:${port}/   (if self-signed; else --cacert your CA's certificate)`,
          `wrk -t1 -c50 -d5s https://${host}:${port}/`
        ],
    server: Shared.withLimits(serverOptions, options)
  })

/** `npm start -- http11 [--host H] [--port N] [--tls-key F --tls-cert F] [--workers N]` */
export const command = Command.make(
  "http11",
  { ...Shared.serverFlags(8081, serverOptions), workers: Shared.workers },
  run
).pipe(
  Shared.withTelemetry,
  Command.withDescription("HTTP/1.1 hello world with keep-alive and pipelining, a benchmark subject for wrk")
)
