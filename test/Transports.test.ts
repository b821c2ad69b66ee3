/**
 * End-to-end tests over real transports: TCP on 127.0.0.1 (always port 0), Unix sockets, and a child
 * process's pipes. Peers are either our `ChatClient` or a raw `node:net` socket, so the server is checked
 * against a client that shares none of its code.
 */
import { describe, expect, it } from "@effect/vitest"
import { Deferred, Duration, Effect, Exit, Fiber, Metric, Scope, Stream } from "effect"
import * as Net from "node:net"
import * as Framing from "../src/Framing.ts"
import { Chat, ChatClient, ChatMetrics, Protocol, Terminator } from "../src/index.ts"
import { captureLogs, show, text } from "./helpers.ts"
import {
  CountLines,
  Echo,
  errorsOf,
  line,
  portOf,
  rawConnect,
  readsToEndThenAnswers,
  settle,
  Slow,
  tcpHandles,
  tcpServer
} from "./transport-helpers.ts"

describe("TCP echo with a raw node:net client", () => {
  it.live("binds 127.0.0.1 on a system-chosen port and echoes several lines sent in one write", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo)
      expect(server.address).toEqual({ _tag: "Inet", host: "127.0.0.1", port: expect.any(Number) })
      expect(portOf(server)).toBeGreaterThan(0)
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("one\ntwo\n\nthree\n")
      yield* peer.receive("one\ntwo\n\nthree\n")
      expect(peer.text).toBe("one\ntwo\n\nthree\n")
    }))

  it.live("echoes 20,000 lines written at once, in order", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo)
      const peer = yield* rawConnect(portOf(server))
      const payload = Array.from({ length: 20_000 }, (_, i) => `line ${i}\n`).join("")
      yield* peer.write(payload)
      yield* peer.receive(payload)
      expect(peer.text).toBe(payload)
    }))

  it.live("reassembles a line split over several writes and answers nothing before its terminator", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo)
      const peer = yield* rawConnect(portOf(server))
      // No Nagle delay, and pauses between writes, so the pieces travel as separate segments.
      peer.socket.setNoDelay(true)
      yield* peer.write("hel")
      yield* Effect.sleep("30 millis")
      yield* peer.write("lo wor")
      yield* Effect.sleep("50 millis")
      expect(peer.text).toBe("")
      yield* peer.write("ld\nsecond")
      yield* Effect.sleep("30 millis")
      yield* peer.write(" line\n")
      yield* peer.receive("hello world\nsecond line\n")
      expect(peer.text).toBe("hello world\nsecond line\n")
    }))

  it.live("delivers an unterminated remainder as a final frame at the client's end of input", () =>
    Effect.gen(function*() {
      // Frames are recorded on the server side: answering after the client's FIN is tested below.
      const frames: Array<string> = []
      const server = yield* tcpServer(
        Protocol.make(
          Terminator.lf,
          (lines) => Stream.runForEach(lines, (frame) => Effect.sync(() => frames.push(show(frame))))
        )
      )
      const peer = yield* rawConnect(portOf(server))
      peer.socket.write("a\nb")
      yield* Effect.sleep("20 millis")
      peer.socket.end("c\nrest")
      yield* peer.until("the server's FIN", (p) => p.ended)
      yield* settle(Effect.map(server.count, (n) => n === 0))
      expect(frames).toEqual(["a", "bc", "rest…"])
      expect(peer.text).toBe("")
    }))
})

describe("half-close over TCP", () => {
  it.live("a client's FIN ends the input but not the output: the answer arrives, then the server's FIN", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(CountLines, { shutdownTimeout: "200 millis" })
      const peer = yield* rawConnect(portOf(server))
      peer.socket.write("first\n")
      peer.socket.end("second\n")
      yield* peer.until("the server's FIN", (p) => p.ended)
      yield* peer.until("the socket to close", (p) => p.closed)
      expect(peer.text).toBe("got 2 lines\n")
      expect(peer.error).toBeUndefined()
    }))

  it.live("a connection that answered after the client's FIN closes rather than hang", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(CountLines, { shutdownTimeout: "200 millis" })
      const peer = yield* rawConnect(portOf(server))
      peer.socket.end("first\n")
      yield* peer.until("the socket to close", (p) => p.closed)
      yield* settle(Effect.map(server.count, (n) => n === 0), "1 second")
      expect(yield* server.count).toBe(0)
    }))
})

describe("endOutput: a half-close of our own over TCP", () => {
  it.live("a client ends its output and keeps reading: a peer that reads to its end, then answers, is heard", () =>
    Effect.gen(function*() {
      const peer = yield* readsToEndThenAnswers
      const port = (peer.address() as Net.AddressInfo).port
      const client = yield* ChatClient.connect(ChatClient.tcp({ port }), { terminator: Terminator.lf })
      yield* client.chat.push("first\n", "second\n")
      yield* client.chat.endOutput
      yield* client.chat.push("dropped: the output is over\n")
      const answers = yield* client.input.pipe(Stream.map(line), Stream.runCollect, Effect.timeout("2 seconds"))
      expect(answers).toEqual(["got 13 bytes", "bye"])
    }))

  it.live("a server's handler ends its output and reads on: the client answers our FIN, and it is read", () =>
    Effect.gen(function*() {
      const heard: Array<string> = []
      const Ask = Protocol.make(Terminator.lf, (lines) =>
        Effect.gen(function*() {
          yield* Chat.push("tell me everything\n")
          yield* Chat.endOutput
          yield* Stream.runForEach(lines, (frame) => Effect.sync(() => heard.push(line(frame))))
        }))
      const server = yield* tcpServer(Ask)
      const peer = yield* rawConnect(portOf(server))
      yield* peer.until("the server's FIN", (p) => p.ended)
      expect(peer.text).toBe("tell me everything\n")
      peer.socket.end("one\ntwo\n") // answered after the server's FIN, then our own
      yield* peer.until("the socket to close", (p) => p.closed)
      yield* settle(Effect.map(server.count, (n) => n === 0))
      expect(heard).toEqual(["one", "two"])
      expect(peer.error).toBeUndefined()
    }))
})

describe("no leaks", () => {
  it.live("1,000 connect/echo/close cycles leave no TCP handle and no connection behind", () =>
    Effect.gen(function*() {
      // Sockets of earlier tests may still be closing: start from a quiet process.
      yield* settle(Effect.sync(() => tcpHandles() === 0))
      const server = yield* tcpServer(Echo)
      const port = portOf(server)
      const before = tcpHandles()
      const cycle = (i: number) =>
        Effect.scoped(Effect.gen(function*() {
          const client = yield* ChatClient.connect(ChatClient.tcp({ port }), { terminator: Terminator.lf })
          yield* client.chat.push(`cycle ${i}\n`)
          const echoed = yield* Stream.runHead(client.input)
          if (echoed._tag !== "Some" || line(echoed.value) !== `cycle ${i}`) {
            return yield* Effect.die(new Error(`cycle ${i}: got ${JSON.stringify(echoed)}`))
          }
        }))
      yield* Effect.forEach(Array.from({ length: 1000 }, (_, i) => i), cycle, { concurrency: 20, discard: true })
      yield* settle(Effect.map(server.count, (n) => n === 0 && tcpHandles() === before))
      expect(tcpHandles()).toBe(before)
      expect(yield* server.count).toBe(0)
    }), 20_000)
})

describe("backpressure over TCP", () => {
  it.live("a client that does not read suspends push; once it reads it gets every byte", () =>
    Effect.gen(function*() {
      const total = 64 * 1024 * 1024
      const chunk = new Uint8Array(1024).fill(120)
      let pushed = 0
      const rssBefore = process.memoryUsage().rss
      const server = yield* tcpServer(Protocol.make(Terminator.lf, () =>
        Effect.gen(function*() {
          while (pushed < total) {
            yield* Chat.push(chunk)
            pushed += chunk.length
          }
        })))
      const peer = yield* rawConnect(portOf(server), { countOnly: true, paused: true })
      yield* Effect.sleep("1 second")
      const stalled = pushed
      expect(peer.bytes).toBe(0)
      // Bounded by the output high-water mark plus Node's and the kernel's socket buffers.
      expect(stalled).toBeGreaterThan(0)
      expect(stalled).toBeLessThan(16 * 1024 * 1024)
      yield* Effect.sleep("200 millis")
      expect(pushed).toBe(stalled)
      peer.socket.resume()
      yield* peer.until("every byte and the FIN", (p) => p.ended, "15 seconds")
      expect(peer.bytes).toBe(total)
      expect(pushed).toBe(total)
      expect(process.memoryUsage().rss - rssBefore).toBeLessThan(64 * 1024 * 1024)
    }), 20_000)
})

describe("a machine that throws, over TCP", () => {
  it.live("closes only its own connection, after what was cut before the throw; the server serves on", () =>
    Effect.gen(function*() {
      // a machine with a bug: it throws on "boom" (it runs as bytes arrive, in the socket's own callback)
      const Buggy = Framing.machine<null, string, never>({
        initial: null,
        terminator: () => Terminator.lf,
        step: (state, frame) => {
          const line = text(frame.bytes)
          // an untyped throw is the point: a bug, not a failure the machine means
          // @effect-diagnostics-next-line globalErrorInEffectFailure:off
          if (line === "boom") throw new Error("a bug in a machine")
          return Framing.next(state, line)
        }
      })
      const server = yield* tcpServer(
        Protocol.make(Buggy, (lines) => Stream.runForEach(lines, (line) => Chat.push(line, "\n"))),
        { shutdownTimeout: 0 }
      )
      const doomed = yield* rawConnect(portOf(server))
      // the line cut before the bug, in the same read, is still answered
      doomed.socket.write("one\nboom\nlost\n")
      yield* doomed.until("the close", (p) => p.closed || p.ended)
      expect(doomed.text).toBe("one\n")
      const other = yield* rawConnect(portOf(server))
      other.socket.write("two\n")
      yield* other.until("its echo", (p) => p.text === "two\n")
    }))

  it.live("one whose first terminator throws closes each connection it opens, as a defect; the server serves on", () =>
    Effect.gen(function*() {
      const before = yield* errorsOf("Defect")
      const NoStart = Framing.machine<null, string, never>({
        initial: null,
        terminator: () => {
          // @effect-diagnostics-next-line globalErrorInEffectFailure:off
          throw new Error("a bug in a machine's first terminator")
        },
        step: (state, frame) => Framing.next(state, text(frame.bytes))
      })
      const server = yield* tcpServer(Protocol.make(NoStart, (lines) => Stream.runDrain(lines)), {
        shutdownTimeout: 0
      })
      for (let i = 0; i < 3; i++) {
        const peer = yield* rawConnect(portOf(server))
        yield* peer.until("the close", (p) => p.closed || p.ended)
      }
      yield* Effect.flatMap(Effect.sleep("20 millis"), () => server.count).pipe(
        Effect.repeat({ until: (n) => n === 0, times: 100 })
      )
      expect(yield* server.count).toBe(0)
      expect((yield* errorsOf("Defect")) - before).toBe(3)
    }))
})

describe("hang-ups over TCP", () => {
  it.live("a peer that hangs up as the server answers and closes is a normal end, not a write failure", () =>
    Effect.gen(function*() {
      const before = (yield* errorsOf("WriteFailed")) + (yield* errorsOf("ReadFailed"))
      const Bye = Protocol.make(
        Terminator.lf,
        (lines) => Stream.runForEach(lines, () => Effect.andThen(Chat.push("bye\n"), Chat.closeWhenDone))
      )
      const server = yield* tcpServer(Bye)
      for (let i = 0; i < 20; i++) {
        const peer = yield* rawConnect(portOf(server))
        peer.socket.end("quit\n") // and goes: FIN right behind its request
      }
      yield* Effect.flatMap(Effect.sleep("50 millis"), () => server.count).pipe(
        Effect.repeat({ until: (n) => n === 0, times: 60 })
      )
      expect(yield* server.count).toBe(0)
      expect((yield* errorsOf("WriteFailed")) + (yield* errorsOf("ReadFailed")) - before).toBe(0)
    }))
})

describe("routine endings over TCP", () => {
  it.live("peers that reset their connections are logged at Debug, not as warnings, and counted", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const before = yield* errorsOf("ReadFailed")
      const resets = 40
      yield* Effect.gen(function*() {
        const server = yield* tcpServer(Echo)
        for (let i = 0; i < resets; i++) {
          const peer = yield* rawConnect(portOf(server))
          yield* peer.write("half a requ")
          yield* settle(Effect.map(server.count, (n) => n === 1))
          peer.socket.resetAndDestroy() // RST, as a client killed mid-request, or a NAT dropping it, sends
          yield* settle(Effect.map(server.count, (n) => n === 0))
        }
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const ended = logs.lines.filter((line) => line.message.startsWith("connection closed by ReadFailed"))
      expect(ended.length, logs.messages()).toBe(resets)
      expect(ended.every((line) => line.level === "Debug")).toBe(true)
      expect(ended[0].message).toBe("connection closed by ReadFailed: Read failed: read ECONNRESET")
      expect(logs.lines.filter((line) => line.level === "Warn" || line.level === "Error")).toEqual([])
      expect((yield* errorsOf("ReadFailed")) - before).toBe(resets)
    }))
})

describe("write timeout over TCP", () => {
  it.live(
    "a peer that stops reading is let go after writeTimeout, and the server serves others meanwhile",
    () =>
      Effect.gen(function*() {
        const chunk = new Uint8Array(64 * 1024).fill(120)
        const Flood = Protocol.make(Terminator.lf, (lines) =>
          Stream.runForEach(
            lines,
            (line) => text(line.bytes) === "flood" ? Effect.forever(Chat.push(chunk)) : Chat.push(line.bytes, "\n")
          ))
        const server = yield* tcpServer(Flood, { writeTimeout: "300 millis" })
        const stalled = yield* rawConnect(portOf(server), { countOnly: true, paused: true })
        stalled.socket.write("flood\n")
        yield* Effect.sleep("100 millis")
        expect(yield* server.count).toBe(1)
        const other = yield* rawConnect(portOf(server))
        other.socket.write("ping\n")
        yield* other.until("its echo", (p) => p.text === "ping\n")
        expect(yield* server.count).toBe(2)
        // the stalled one goes; the other stays
        const counted = yield* Effect.flatMap(Effect.sleep("50 millis"), () => server.count).pipe(
          Effect.repeat({ until: (n) => n === 1, times: 60 })
        )
        expect(counted).toBe(1)
        other.socket.write("pong\n")
        yield* other.until("its second echo", (p) => p.text === "ping\npong\n")
      }),
    10_000
  )
})

describe("read backpressure over TCP", () => {
  it.live(
    "a stalled handler stops the peer's writer: the server reads no further ahead than one read",
    () =>
      Effect.gen(function*() {
        let seen = 0
        const Stalls = Protocol.make(Terminator.lf, (lines) =>
          Stream.runForEach(lines, () =>
            Effect.andThen(
              Effect.sync(() => seen++),
              Effect.never
            )))
        const server = yield* tcpServer(Stalls, { shutdownTimeout: 0 })
        const before = (yield* Metric.value(ChatMetrics.bytesIn)).count
        const peer = yield* rawConnect(portOf(server), { countOnly: true })
        const block = Buffer.alloc(1024 * 1024, "z")
        for (let i = 1; i <= 1024; i++) block[i * 1024 - 1] = 10
        // 64 MiB offered at once: far more than the socket buffers on both sides can hold
        for (let i = 0; i < 64; i++) peer.socket.write(block)
        yield* Effect.sleep("500 millis")
        const read = (yield* Metric.value(ChatMetrics.bytesIn)).count - before
        expect(seen).toBe(1)
        expect(read).toBeGreaterThan(0)
        expect(read).toBeLessThanOrEqual(1024 * 1024)
        yield* Effect.sleep("300 millis")
        expect((yield* Metric.value(ChatMetrics.bytesIn)).count - before).toBe(read)
        // what the kernel and Node could not take waits in the client: the writer is stopped, not buffered by us
        expect(peer.socket.writableLength).toBeGreaterThan(32 * 1024 * 1024)
      }),
    10_000
  )
})

describe("maxConnections over TCP", () => {
  it.live("refuses a connection beyond the limit with rejectMessage, and serves again once one closes", () =>
    Effect.gen(function*() {
      const server = yield* tcpServer(Echo, { maxConnections: 2, rejectMessage: "busy\r\n" })
      const port = portOf(server)
      // Each held client has its own scope, closed by the test or else with it.
      const outer = yield* Effect.scope
      const hold = (name: string) =>
        Effect.gen(function*() {
          const scope = yield* Scope.fork(outer)
          const client = yield* ChatClient.connect(ChatClient.tcp({ port }), { terminator: Terminator.lf }).pipe(
            Scope.provide(scope)
          )
          yield* client.chat.push(`${name}\n`)
          const echoed = yield* Stream.runHead(client.input)
          expect(echoed._tag === "Some" && line(echoed.value)).toBe(name)
          return scope
        })
      const first = yield* hold("first")
      const second = yield* hold("second")
      expect(yield* server.count).toBe(2)

      const third = yield* rawConnect(port)
      yield* third.write("third\n")
      yield* third.until("the server's FIN", (p) => p.ended)
      expect(third.text).toBe("busy\r\n")

      yield* Scope.close(first, Exit.void)
      yield* settle(Effect.map(server.count, (n) => n === 1))
      expect(yield* server.count).toBe(1)
      // the slot is free as soon as the count says so
      const fourth = yield* rawConnect(port)
      yield* fourth.write("fourth\n")
      yield* fourth.receive("fourth\n")
      expect(fourth.text).toBe("fourth\n")
      expect(fourth.ended).toBe(false)
      expect(yield* server.count).toBe(2)
      yield* Scope.close(second, Exit.void)
    }))
})

describe("graceful shutdown over TCP", () => {
  it.live("finishes a request in progress while refusing new connections", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      // Closed by the test, or else with the test's scope.
      const serverScope = yield* Scope.fork(yield* Effect.scope)
      const server = yield* tcpServer(Slow(started)).pipe(Scope.provide(serverScope))
      const port = portOf(server)
      const peer = yield* rawConnect(port)
      yield* peer.write("slow\n")
      yield* Deferred.await(started)

      const shutdown = yield* Effect.forkChild(Effect.timed(Scope.close(serverScope, Exit.void)))
      yield* Effect.sleep("20 millis")
      const refused = yield* Effect.flip(rawConnect(port))
      expect(refused.code).toBe("ECONNREFUSED")
      // Refused while the request was still being served.
      expect(peer.text).toBe("")

      yield* peer.receive("done slow\n")
      expect(peer.text).toBe("done slow\n")
      peer.socket.end()
      yield* peer.until("the server's FIN", (p) => p.ended)
      const [took] = yield* Fiber.join(shutdown)
      // Done as soon as the connection was, far from the default 5 s shutdown timeout.
      expect(Duration.toMillis(took)).toBeLessThan(1500)
      expect(yield* server.count).toBe(0)
    }))

  it.live("interrupts a connection that never finishes after shutdownTimeout", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      // Closed by the test, or else with the test's scope.
      const serverScope = yield* Scope.fork(yield* Effect.scope)
      const server = yield* tcpServer(Slow(started), { shutdownTimeout: "300 millis" }).pipe(
        Scope.provide(serverScope)
      )
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("hang\n")
      yield* Deferred.await(started)

      const [took] = yield* Effect.timed(Scope.close(serverScope, Exit.void))
      expect(Duration.toMillis(took)).toBeGreaterThanOrEqual(250)
      expect(Duration.toMillis(took)).toBeLessThan(2000)
      yield* peer.until("the socket to close", (p) => p.closed, "1 second")
      expect(peer.text).toBe("")
      expect(yield* server.count).toBe(0)
    }))

  // Regression: a client that vanished while its request was served left the connection open until shutdown
  // when the answer was written after the socket closed (see the half-close tests for the mechanism).
  it.live("a client that disconnects during a slow request does not leave its connection open", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const server = yield* tcpServer(Slow(started), { shutdownTimeout: "200 millis" })
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("slow\n")
      yield* Deferred.await(started)
      peer.socket.destroy()
      // The answer is due 200 ms after the request started.
      yield* Effect.sleep("300 millis")
      yield* settle(Effect.map(server.count, (n) => n === 0), "1 second")
      expect(yield* server.count).toBe(0)
    }))

  // Regression: a write to a socket that is already destroyed never completed (effect's NodeSocket `write`
  // returns false and waits for a `drain`, `error` or `close` that were all emitted before), so a connection
  // reset during a slow request lingered; the writer now races the transport's close.
  it.live("a client that resets the connection during a slow request has its connection closed at once", () =>
    Effect.gen(function*() {
      const started = yield* Deferred.make<void>()
      const server = yield* tcpServer(Slow(started), { shutdownTimeout: "200 millis" })
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("slow\n")
      yield* Deferred.await(started)
      peer.socket.resetAndDestroy()
      yield* Effect.sleep("300 millis")
      yield* settle(Effect.map(server.count, (n) => n === 0), "1 second")
      expect(yield* server.count).toBe(0)
    }))
})
