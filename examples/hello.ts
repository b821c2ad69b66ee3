/**
 * hello — the asynchat "Hello" server (seed 002): `GET /kongxx` answers `Hello kongxx!` in a small HTML page,
 * then closes when done. The request line is cut at CRLF, then header lines up to the empty one; a framing
 * machine carries the name from the first to the last.
 *
 * Try it: npm start -- hello --port 8080, then: curl http://127.0.0.1:8080/kongxx
 */
import { Effect, Stream } from "effect"
import { Chat, type ChatServer, Framing, Protocol, Terminator } from "effect-asynchat"
import { Command } from "effect/cli"
import * as Shared from "./shared.ts"

/** The path of the request line, once the headers have ended: `undefined` for a malformed request line. */
type Request = { readonly name: string | undefined }

type State = { readonly _tag: "RequestLine" } | { readonly _tag: "Headers"; readonly name: string | undefined }

const decoder = new TextDecoder()

/** Request line, then header lines until the empty one; then ignore the rest. */
export const HelloRequest = Framing.machine<State | { readonly _tag: "Done" }, Request>({
  initial: { _tag: "RequestLine" },
  terminator: (s) => (s._tag === "Done" ? Terminator.none : Terminator.crlf),
  step: (s, frame) => {
    switch (s._tag) {
      case "RequestLine": {
        const parts = decoder.decode(frame.bytes).split(" ")
        const name = parts.length === 3 && parts[1].startsWith("/") ? decodeURIComponent(parts[1].slice(1)) : undefined
        return Framing.next({ _tag: "Headers", name })
      }
      case "Headers":
        return frame.bytes.length === 0 ? Framing.next({ _tag: "Done" }, { name: s.name }) : Framing.next(s)
      case "Done":
        return Framing.next(s)
    }
  }
})

const escapeHtml = (s: string) =>
  s.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", "\"": "&quot;", "'": "&#39;" })[c]!)

/** Answers one request, then closes when the answer is written. */
export const Hello = Protocol.make(HelloRequest, (requests) =>
  Stream.runHead(requests).pipe(
    Effect.flatMap((request) => {
      if (request._tag === "None") return Effect.void
      const { name } = request.value
      if (name === undefined) {
        return Chat.push("HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nbad request line\r\n")
      }
      return Chat.push(
        "HTTP/1.0 200 OK\r\n",
        "Content-Type: text/html\r\n",
        "\r\n",
        "<html>\r\n<body>\r\n",
        `Hello ${escapeHtml(name)}! \r\n`,
        "</body>\r\n</html>\r\n"
      )
    }),
    Effect.andThen(Chat.closeWhenDone)
  ))

/** Requests are a line and a few headers, sent at once. */
export const serverOptions: ChatServer.Options = { maxFrameLength: 8 * 1024, frameTimeout: "10 seconds" }

/** Runs the hello server on `host:port`. */
export const run = (options: Shared.ServerFlags) =>
  Shared.serveTcp(Hello, {
    ...options,
    name: "hello",
    tryIt: (host, port) => [`curl http://${host}:${port}/kongxx`],
    server: Shared.withLimits(serverOptions, options)
  })

/** `npm start -- hello [--host H] [--port N]` */
export const command = Command.make("hello", Shared.serverFlags(8080, serverOptions), run).pipe(
  Shared.withTelemetry,
  Command.withDescription("asynchat's Hello server: GET /kongxx answers 'Hello kongxx!'")
)
