/**
 * Graceful shutdown under load, end to end over TCP: the redis and http11 examples' CLI, busy with
 * redis-benchmark or wrk and with pipelining clients of our own, stops on SIGTERM in well under a second, and
 * every client gets whole answers, then the server's FIN (not a reset). A client that pipelined far ahead and
 * stopped reading shows where the answers stop: HTTP's last one says `Connection: close`.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Fiber, Scope } from "effect"
import { Buffer } from "node:buffer"
import * as Net from "node:net"
import { Http11, serverOptions as http11Options } from "../../examples/http11.ts"
import { ChatServer, Listener } from "../../src/index.ts"
import { Wakes } from "../helpers.ts"
import { redisBenchmark, wrk } from "../tools.ts"
import { startJob } from "./http-helpers.ts"

/** Whole answers at the front of `bytes`: how many, the bytes they take, and each one's head. */
type Cut = (bytes: Buffer) => { readonly answers: ReadonlyArray<string>; readonly length: number }

/**
 * A raw client that keeps `depth` requests in flight (a new one for each answer) until the server closes,
 * recording what it receives, its end and any error.
 */
class Pipeliner {
  readonly chunks: Array<Buffer> = []
  answered = 0
  ended = false
  error: Error | undefined = undefined
  private readonly wakes = new Wakes()
  private readonly socket: Net.Socket
  private pending = Buffer.alloc(0)

  constructor(port: number, request: Buffer, depth: number, cut: Cut) {
    this.socket = Net.createConnection({ host: "127.0.0.1", port, allowHalfOpen: true })
    this.socket.once("connect", () => this.socket.write(Buffer.concat(Array.from({ length: depth }, () => request))))
    this.socket.on("data", (data: Buffer) => {
      this.chunks.push(data)
      this.pending = Buffer.concat([this.pending, data])
      const { answers, length } = cut(this.pending)
      this.pending = this.pending.subarray(length)
      this.answered += answers.length
      if (!this.ended && answers.length > 0 && !this.socket.writableEnded) {
        this.socket.write(Buffer.concat(answers.map(() => request)))
      }
      this.wakes.wake()
    })
    this.socket.on("end", () => {
      this.ended = true
      this.socket.end()
      this.wakes.wake()
    })
    this.socket.on("error", (error) => {
      this.error = error
      this.wakes.wake()
    })
  }

  get received(): Buffer {
    return Buffer.concat(this.chunks)
  }

  until(what: string, predicate: () => boolean) {
    return this.wakes.until(
      predicate,
      "5 seconds",
      () => `waited for ${what}: ${this.answered} answers, ended ${this.ended}, error ${this.error?.message}`
    )
  }

  destroy(): void {
    this.socket.destroy()
  }
}

const pipeliners = (port: number, n: number, request: Buffer, depth: number, cut: Cut) =>
  Effect.acquireRelease(
    Effect.sync(() => Array.from({ length: n }, () => new Pipeliner(port, request, depth, cut))),
    (clients) => Effect.sync(() => clients.forEach((client) => client.destroy()))
  )

/** An `ECHO` of 4 KiB, and its answer: big answers, so a cut one would show. */
const value = "v".repeat(4096)
const echo = Buffer.from(`*2\r\n$4\r\nECHO\r\n$${value.length}\r\n${value}\r\n`)
const echoed = `$${value.length}\r\n${value}\r\n`
const cutEchoes: Cut = (bytes) => {
  const n = Math.floor(bytes.length / echoed.length)
  return { answers: Array.from({ length: n }, () => "echo"), length: n * echoed.length }
}

/** Whole HTTP/1.1 answers (head and Content-Length body) at the front of `bytes`, each as its head. */
const cutResponses: Cut = (bytes) => {
  const answers: Array<string> = []
  let at = 0
  for (;;) {
    const end = bytes.indexOf("\r\n\r\n", at)
    if (end < 0) break
    const head = bytes.subarray(at, end).toString("latin1")
    const length = Number(/\r\nContent-Length: (\d+)/i.exec(head)?.[1] ?? 0)
    if (bytes.length < end + 4 + length) break
    answers.push(head)
    at = end + 4 + length
  }
  return { answers, length: at }
}

const get = Buffer.from("GET / HTTP/1.1\r\nHost: test\r\n\r\n")

/** The examples' CLI serving `example` on a port the system picks, in its own process group. */
const serverOf = (example: string) =>
  Effect.gen(function*() {
    const job = yield* startJob(process.execPath, [
      "--conditions=@effect-asynchat/source",
      "examples/cli.ts",
      example,
      "--port",
      "0"
    ])
    const port = Number((yield* job.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1])
    return { job, port }
  })

/**
 * The examples' CLI serving `example` under `load` (a command run against its port) and 4 pipelining clients
 * of ours, stopped by SIGTERM once every client has 100 answers: it exits 0 within a second, and each client
 * got only whole answers, then the server's FIN (no reset). The clients, for more checks.
 */
const stopUnderLoad = (
  example: string,
  load: (port: number) => readonly [string, ReadonlyArray<string>],
  client: { readonly request: Buffer; readonly depth: number; readonly cut: Cut }
) =>
  Effect.gen(function*() {
    const { job, port } = yield* serverOf(example)
    yield* startJob(...load(port))
    const clients = yield* pipeliners(port, 4, client.request, client.depth, client.cut)
    for (const c of clients) yield* c.until("100 answers", () => c.answered >= 100)
    const began = performance.now()
    const exit = yield* job.signal("SIGTERM", "5 seconds")
    expect(exit).toMatchObject({ code: 0, signal: null })
    expect(performance.now() - began).toBeLessThan(1000)
    for (const c of clients) yield* c.until("the server's FIN", () => c.ended || c.error !== undefined)
    for (const c of clients) {
      expect(c.error?.message).toBeUndefined()
      const received = c.received
      const { answers, length } = client.cut(received)
      expect(length, `${received.length - length} bytes of a cut answer`).toBe(received.length)
      expect(answers.length).toBeGreaterThan(10)
    }
    return clients
  })

const benchmarkTest = redisBenchmark.available ? it.live : it.live.skip
const wrkTest = wrk.available ? it.live : it.live.skip

describe("graceful shutdown under load", () => {
  benchmarkTest(
    `the redis example stops within a second under redis-benchmark -P 16, every answer whole${redisBenchmark.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        redisBenchmark.require()
        yield* stopUnderLoad(
          "redis",
          (port) => [
            "redis-benchmark",
            ["-p", String(port), "-c", "20", "-n", "100000000", "-P", "16", "-t", "ping,set,get", "-q"]
          ],
          { request: echo, depth: 16, cut: cutEchoes }
        )
      })),
    30_000
  )

  wrkTest(
    `the http11 example stops within a second under wrk, every answer whole${wrk.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        wrk.require()
        const clients = yield* stopUnderLoad(
          "http11",
          (port) => ["wrk", ["-t1", "-c20", "-d30s", `http://127.0.0.1:${port}/`]],
          { request: get, depth: 4, cut: cutResponses }
        )
        for (const client of clients) {
          const heads = cutResponses(client.received).answers
          // only a connection's last answer may say it closes
          expect(heads.slice(0, -1).filter((head) => /\r\nConnection: close/i.test(head))).toEqual([])
        }
      })),
    30_000
  )

  it.live("an http11 client that pipelined far ahead gets whole answers up to one that says Connection: close", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const listener = yield* Listener.makeTcp({ host: "127.0.0.1", port: 0 }).pipe(Scope.provide(scope))
      const server = yield* ChatServer.make(Http11, http11Options).pipe(
        Effect.provideService(Listener.Listener, listener),
        Scope.provide(scope)
      )
      const port = server.address._tag === "Inet" ? server.address.port : 0
      // 50,000 requests in one go, none read back yet: the server's answers back up until it waits on them
      const socket = Net.createConnection({ host: "127.0.0.1", port, allowHalfOpen: true })
      socket.pause()
      const requests = 50_000
      socket.write(Buffer.concat(Array.from({ length: requests }, () => get)))
      yield* Effect.sleep("300 millis")
      const closing = yield* Effect.forkChild(Scope.close(scope, Exit.void))
      yield* Effect.sleep("50 millis")
      const received: Array<Buffer> = []
      const outcome = yield* Effect.callback<string>((resume) => {
        socket.on("data", (data: Buffer) => received.push(data))
        socket.once("end", () => resume(Effect.succeed("end")))
        socket.once("error", (error) => resume(Effect.succeed(error.message)))
        socket.resume()
      }).pipe(Effect.timeout("5 seconds"))
      socket.destroy()
      expect(outcome).toBe("end") // a FIN after the last answer, not a reset that could lose them
      const bytes = Buffer.concat(received)
      const { answers, length } = cutResponses(bytes)
      expect(length).toBe(bytes.length)
      expect(answers.length).toBeGreaterThan(0)
      expect(answers.length).toBeLessThan(requests)
      expect(answers.at(-1)).toMatch(/\r\nConnection: close$/)
      expect(answers.slice(0, -1).filter((head) => head.includes("Connection"))).toEqual([])
      yield* Fiber.join(closing).pipe(Effect.timeout("1 second"))
    }))
})
