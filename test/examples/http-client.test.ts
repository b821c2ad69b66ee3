/**
 * The http-client example end to end over TCP on 127.0.0.1: against the http-server example and against
 * Node's own `node:http` server, in process (its output captured through `Stdio`) and once as the real CLI.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Sink } from "effect"
import * as Stdio from "effect/Stdio"
import * as Http from "node:http"
import type * as Net from "node:net"
import * as HttpClient from "../../examples/http-client.ts"
import { HttpServer, serverOptions } from "../../examples/http-server.ts"
import { ChatError } from "../../src/index.ts"
import { cli, freePort, httpServerAnswer, withServer } from "./http-helpers.ts"

/**
 * Fetches with the response captured instead of written to stdout; returns it, one char per byte. `onOutput`
 * sees the output so far after every write.
 */
const fetchCaptured = (options: { readonly port: number; readonly path: string }, onOutput?: (text: string) => void) =>
  Effect.gen(function*() {
    const chunks: Array<Uint8Array> = []
    const capture = Sink.forEach((chunk: Uint8Array) =>
      Effect.sync(() => {
        chunks.push(chunk)
        onOutput?.(Buffer.concat(chunks).toString("latin1"))
      })
    )
    yield* HttpClient.fetch({ host: "127.0.0.1", ...options }, capture)
    return Buffer.concat(chunks).toString("latin1")
  })

/** What a `node:http` server saw of a request. */
interface Seen {
  readonly method: string | undefined
  readonly url: string | undefined
  readonly httpVersion: string
  readonly rawHeaders: ReadonlyArray<string>
}

/**
 * A `node:http` server on a system-chosen port, closed with the scope. `respond` answers each request;
 * `requests` records what arrived.
 */
const nodeHttpServer = (respond: (request: Http.IncomingMessage, response: Http.ServerResponse) => void) =>
  Effect.acquireRelease(
    Effect.callback<{ readonly port: number; readonly server: Http.Server; readonly requests: Array<Seen> }>(
      (resume) => {
        const requests: Array<Seen> = []
        const server = Http.createServer((request, response) => {
          requests.push({
            method: request.method,
            url: request.url,
            httpVersion: request.httpVersion,
            rawHeaders: request.rawHeaders
          })
          // No Date header: the answer's bytes are then known in advance.
          response.sendDate = false
          respond(request, response)
        })
        server.listen(
          0,
          "127.0.0.1",
          () => resume(Effect.succeed({ port: (server.address() as Net.AddressInfo).port, server, requests }))
        )
      }
    ),
    ({ server }) =>
      Effect.callback<void>((resume) => {
        server.closeAllConnections()
        server.close(() => resume(Effect.void))
      })
  )

describe("http-client", () => {
  it.live("fetches from the http-server example and writes the whole response to stdout, byte for byte", () =>
    withServer(HttpServer, serverOptions, (port) =>
      Effect.gen(function*() {
        // `run`, as the CLI calls it, with standard output captured.
        const written: Array<string | Uint8Array> = []
        const stdout = Sink.forEach((chunk: string | Uint8Array) => Effect.sync(() => written.push(chunk)))
        yield* HttpClient.run({ host: "127.0.0.1", port, path: "/hello?who=client" }).pipe(
          Effect.provide(Stdio.layerTest({ stdout: () => stdout }))
        )
        const output = Buffer.concat(written.map((chunk) => Buffer.from(chunk))).toString("latin1")
        const body = "method: GET\npath: /hello?who=client\n"
        expect(output).toBe(httpServerAnswer("200 OK", body))
      })))

  it.live("sends GET <path> HTTP/1.0 with a Host header to node:http, and prints the answer as it arrives", () =>
    Effect.scoped(Effect.gen(function*() {
      // The server sends the second half only once the client has printed the first: output is not held back.
      let releaseSecondHalf: (() => void) | undefined = undefined
      const firstPrinted = new Promise<void>((resolve) => (releaseSecondHalf = resolve))
      const release = (text: string) => {
        if (text.endsWith("first half\n")) releaseSecondHalf?.()
      }
      const { port, requests } = yield* nodeHttpServer((_, response) => {
        response.writeHead(200, { "Content-Type": "text/plain" })
        response.write("first half\n")
        void firstPrinted.then(() => response.end("second half\n"))
      })
      const output = yield* fetchCaptured({ port, path: "/files/a.txt" }, release).pipe(
        Effect.timeoutOrElse({
          duration: "5 seconds",
          orElse: () => Effect.die(new Error("the client held back the first half until the server closed"))
        })
      )
      expect(requests).toEqual([{
        method: "GET",
        url: "/files/a.txt",
        httpVersion: "1.0",
        rawHeaders: ["Host", `127.0.0.1:${port}`]
      }])
      expect(output).toBe(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nfirst half\nsecond half\n"
      )
    })))

  it.live("writes a 2 MiB body in full, whatever the reads", () =>
    Effect.scoped(Effect.gen(function*() {
      const body = Buffer.alloc(2 * 1024 * 1024)
      for (let i = 0; i < body.length; i++) body[i] = i % 251
      const { port } = yield* nodeHttpServer((_, response) => {
        response.writeHead(200, { "Content-Length": String(body.length) })
        response.end(body)
      })
      const output = yield* fetchCaptured({ port, path: "/" })
      const head = `HTTP/1.1 200 OK\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n`
      expect(output.length).toBe(head.length + body.length)
      expect(output.startsWith(head)).toBe(true)
      expect(Buffer.from(output.slice(head.length), "latin1").equals(body)).toBe(true)
    })))

  it.live("fails with ConnectFailed when nothing listens", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const exit = yield* Effect.exit(fetchCaptured({ port, path: "/" }))
      expect(exit._tag).toBe("Failure")
      const error = Exit.isFailure(exit) ? exit.cause.reasons.find((reason) => reason._tag === "Fail") : undefined
      expect(error?._tag === "Fail" && error.error instanceof ChatError.ChatError && error.error.reason._tag)
        .toBe("ConnectFailed")
    }))

  it.live("refuses a path that could split the request line, before connecting", () =>
    Effect.gen(function*() {
      const exit = yield* Effect.exit(fetchCaptured({ port: 1, path: "/a b\r\nX-Injected: 1" }))
      expect(exit).toEqual(Exit.fail(
        new HttpClient.BadPath({
          message: "--path must start with / and be printable ASCII: /a b\r\nX-Injected: 1"
        })
      ))
    }))
})

// Each spawns a Node that loads the examples from source: run side by side.
describe.concurrent("http-client as the real CLI", () => {
  it.live("prints the response to stdout and exits 0 when the server closes", () =>
    Effect.scoped(Effect.gen(function*() {
      const { port } = yield* nodeHttpServer((request, response) => {
        response.writeHead(200, { "Content-Type": "text/plain" })
        response.end(`you asked for ${request.url}\n`)
      })
      const result = yield* cli("http-client", "--port", String(port), "--path", "/cli")
      expect(result.stderr).toBe("")
      expect(result.code).toBe(0)
      expect(result.stdout.toString("latin1")).toBe(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nyou asked for /cli\n"
      )
    })))

  it.live("exits non-zero, saying why, when it cannot connect", () =>
    Effect.gen(function*() {
      const port = yield* freePort
      const result = yield* cli("http-client", "--port", String(port))
      expect(result.code).toBe(1)
      expect(result.stdout.toString()).toBe("")
      expect(result.stderr).toBe(
        `http-client: Connect to 127.0.0.1:${port} failed: connect ECONNREFUSED 127.0.0.1:${port}\n`
      )
    }))
})
