/**
 * Listeners end to end: TCP ports, and Node streams handed over as connections.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Duration, Effect, Metric, Scheduler, Stream } from "effect"
import { spawnSync } from "node:child_process"
import * as NodeStream from "node:stream"
import { Chat, ChatClient, ChatMetrics, ChatServer, Listener, Protocol, Terminator } from "../src/index.ts"
import { streamOf, text, Wakes } from "./helpers.ts"
import { tool } from "./tools.ts"
import {
  certificates,
  Echo,
  openssl,
  portOf,
  rawConnect,
  recordingDuplex,
  spawnChild,
  streamListener,
  tcpServer
} from "./transport-helpers.ts"

/** ss, from iproute2: shows a socket's keep-alive timer. */
const ss = tool("ss", ["-V"])

describe("Listener.makeTcp", () => {
  it.live("a port already in use fails with a typed SocketServerError whose message says so", () =>
    Effect.gen(function*() {
      const first = yield* Listener.makeTcp({ host: "127.0.0.1" })
      assert(first.address._tag === "Inet")
      const error = yield* Effect.flip(Listener.makeTcp({ host: "127.0.0.1", port: first.address.port }))
      expect(error._tag).toBe("SocketServerError")
      expect(error.reason._tag).toBe("SocketServerOpenError")
      expect(String(error.reason.cause)).toContain("EADDRINUSE")
      // the log's first line says why, not only Effect's "Open"
      expect(error.message).toBe(`Open: listen EADDRINUSE: address already in use 127.0.0.1:${first.address.port}`)
    }))

  it.live("hands over connections that arrived before accept ran, in order; stopAccepting leaves them open", () =>
    Effect.gen(function*() {
      const listener = yield* Listener.makeTcp({ host: "127.0.0.1" })
      assert(listener.address._tag === "Inet")
      const port = listener.address.port
      const a = yield* rawConnect(port)
      const b = yield* rawConnect(port)
      yield* Effect.sleep("50 millis") // both accepted by the kernel and by Node, with nobody accepting yet
      const links: Array<Listener.Link> = []
      const wakes = new Wakes()
      yield* Effect.forkScoped(listener.accept((link) => {
        links.push(link)
        wakes.wake()
      }))
      yield* wakes.until(() => links.length === 2, "5 seconds", () => `${links.length} links`)
      expect(links.map((link) => link.remoteAddress)).toEqual([
        { _tag: "Inet", host: "127.0.0.1", port: a.socket.localPort },
        { _tag: "Inet", host: "127.0.0.1", port: b.socket.localPort }
      ])
      yield* listener.stopAccepting
      const refused = yield* Effect.flip(rawConnect(port))
      expect(refused.code).toBe("ECONNREFUSED")
      // open connections are untouched: they still carry bytes both ways
      streamOf(links[0]).write("to a\n")
      yield* a.receive("to a\n")
      yield* b.write("from b\n")
      const stream = streamOf(links[1])
      stream.resume()
      const received = yield* Effect.callback<string>((resume) => {
        stream.once("data", (data: Buffer) => resume(Effect.succeed(data.toString())))
      })
      expect(received).toBe("from b\n")
    }))
})

describe("a listener of Node streams", () => {
  it.live("a frame whose rest waits behind our own pause is not timed out while the handler is busy", () =>
    Effect.gen(function*() {
      const { stream, written } = recordingDuplex()
      const SlowFirst = Protocol.make(Terminator.lf, (lines) =>
        Stream.runForEach(lines, (frame) =>
          Effect.andThen(
            text(frame.bytes) === "a" ? Effect.sleep("400 millis") : Effect.void,
            Chat.push(frame.bytes, "\n")
          )))
      yield* ChatServer.make(SlowFirst, { idleTimeout: Duration.infinity, frameTimeout: "200 millis" }).pipe(
        Effect.provideService(Listener.Listener, streamListener(stream))
      )
      // all of "xxyyzz" arrives within 40 ms; the handler is busy with "a" for 400
      stream.push("a\nxx")
      yield* Effect.sleep("20 millis")
      stream.push("yy")
      yield* Effect.sleep("20 millis")
      stream.push("zz\n")
      yield* Effect.sleep("800 millis")
      expect(Buffer.concat(written).toString()).toBe("a\nxxyyzz\n")
    }))

  // Regression: a stream closed before its connection opened was never noticed (its 'close' had come and
  // gone), and the connection was served forever.
  it.live("a stream that closed before its connection opened ends that connection at once", () =>
    Effect.gen(function*() {
      const { stream } = recordingDuplex()
      stream.destroy()
      yield* Effect.promise(() => new Promise((resolve) => stream.once("close", resolve)))
      const server = yield* ChatServer.make(Echo, { idleTimeout: Duration.infinity }).pipe(
        Effect.provideService(Listener.Listener, streamListener(stream))
      )
      yield* Effect.sleep("50 millis")
      expect(yield* server.count).toBe(0)
    }))

  // Regression: a read that the peer answered inside our own write ran our handler there, whose output then
  // started a second writer beside the first: a producer's output came after what was pushed behind it, or
  // was cut off by the close marker.
  for (const ending of ["a push", "closeWhenDone"] as const) {
    it.live(`a peer that answers inside our write keeps the order of a producer and ${ending} after it`, () =>
      Effect.gen(function*() {
        const written: Array<string> = []
        const stream = new NodeStream.Duplex({
          read() {},
          write(chunk: Buffer, _encoding, callback) {
            written.push(chunk.toString())
            if (chunk.toString().includes("r1")) this.push("go\n") // the peer answers inside our write
            callback()
          }
        })
        const P = Protocol.make(Terminator.lf, (lines) =>
          Stream.runForEach(lines, (frame) => {
            const line = text(frame.bytes)
            if (line === "start") {
              // from another fiber: the write goes out on a scheduler turn, outside any read
              return Effect.asVoid(Effect.forkChild(Effect.andThen(Effect.sleep("10 millis"), Chat.push("r1\n"))))
            }
            if (line !== "go") return Effect.void
            return Effect.gen(function*() {
              yield* Chat.push("X\n")
              yield* Chat.pushStream(Stream.fromEffect(Effect.as(Effect.sleep("20 millis"), Buffer.from("p1\n"))))
              yield* ending === "a push" ? Chat.push("Y\n") : Chat.closeWhenDone
            })
          }))
        yield* ChatServer.make(P, { idleTimeout: Duration.infinity }).pipe(
          Effect.provideService(Listener.Listener, streamListener(stream))
        )
        stream.push("start\n")
        yield* Effect.sleep("200 millis")
        expect(written.join("")).toBe(ending === "a push" ? "r1\nX\np1\nY\n" : "r1\nX\np1\n")
      }))
  }

  it.live("writeTimeout spares a slow peer that keeps taking bytes", () =>
    Effect.gen(function*() {
      const timedOut = Metric.withAttributes(ChatMetrics.errors, { reason: "WriteTimeout" })
      const before = (yield* Metric.value(timedOut)).count
      let written = 0
      const stream = new NodeStream.Duplex({
        read() {},
        write(chunk: Buffer, _encoding, callback) {
          written += chunk.length
          setTimeout(callback, 20) // 20 KiB every 20 ms: the whole answer takes 400 ms
        }
      })
      const Big = Protocol.make(Terminator.lf, (lines) =>
        Stream.runForEach(lines, () =>
          Effect.andThen(
            Chat.push(...Array.from({ length: 20 }, () => Buffer.alloc(20 * 1024, "x"))),
            Chat.push("end\n")
          )))
      const server = yield* ChatServer.make(Big, { writeTimeout: "200 millis" }).pipe(
        Effect.provideService(Listener.Listener, streamListener(stream))
      )
      stream.push("go\n")
      yield* Effect.sleep("1 second")
      expect((yield* Metric.value(timedOut)).count - before).toBe(0)
      expect(written).toBe(20 * 20 * 1024 + 4)
      expect(yield* server.count).toBe(1)
      stream.destroy()
    }))

  it.live("closeWhenDone hangs up only once a slow peer has taken the whole answer", () =>
    Effect.gen(function*() {
      let written = 0
      const stream = new NodeStream.Duplex({
        read() {},
        write(chunk: Buffer, _encoding, callback) {
          // slow but steady: longer, in all, than a closing socket is given to drain
          setTimeout(() => {
            written += chunk.length
            callback()
          }, 1500)
        }
      })
      const Quit = Protocol.make(Terminator.lf, (lines) =>
        Stream.runForEach(lines, () =>
          Effect.andThen(
            Chat.push(...Array.from({ length: 4 }, () => Buffer.alloc(15 * 1024, "x"))),
            Chat.closeWhenDone
          )))
      yield* ChatServer.make(Quit).pipe(Effect.provideService(Listener.Listener, streamListener(stream)))
      stream.push("quit\n")
      yield* Effect.sleep("100 millis").pipe(Effect.repeat({
        until: () => stream.destroyed,
        times: 100
      }))
      expect(written).toBe(60 * 1024)
      expect(stream.writableFinished).toBe(true)
    }), 20_000)

  it.live(
    "a stream that pushes back on every write and drains a tick later gets every answer",
    () =>
      Effect.gen(function*() {
        const written: Array<Buffer> = []
        // takes each write, reports backpressure (high-water mark 1), and emits 'drain' on the next tick
        const stream = new NodeStream.Duplex({
          writableHighWaterMark: 1,
          read() {},
          write(chunk: Buffer, _encoding, callback) {
            written.push(chunk)
            process.nextTick(callback)
          }
        })
        // fibers yield to the scheduler every few steps: a 'drain' can come before the wait for it starts
        yield* ChatServer.make(Echo, { shutdownTimeout: 0 }).pipe(
          Effect.provideService(Listener.Listener, streamListener(stream)),
          Effect.provideService(Scheduler.MaxOpsBeforeYield, 3)
        )
        let expected = ""
        for (let n = 1; n <= 60; n++) {
          const batch = Array.from({ length: n }, (_, i) => `${n}.${i}\n`).join("")
          expected += batch
          stream.push(batch)
          yield* Effect.sleep("1 millis").pipe(
            Effect.repeat({ until: () => Buffer.concat(written).length >= expected.length, times: 500 })
          )
        }
        expect(Buffer.concat(written).toString()).toBe(expected)
        stream.destroy()
      }),
    20_000
  )

  it.live("serves a connection it hands over from inside accept, reading and writing the Duplex directly", () =>
    Effect.gen(function*() {
      const { stream, written } = recordingDuplex()
      // a listener with a connection already waiting: it is handed over as soon as the server accepts
      const server = yield* ChatServer.make(Echo).pipe(Effect.provideService(Listener.Listener, streamListener(stream)))
      stream.push("one\ntw")
      stream.push(Buffer.from("o\nthree"))
      stream.push(null)
      yield* Effect.sleep("50 millis").pipe(Effect.repeat({ until: () => stream.destroyed, times: 40 }))
      expect(Buffer.concat(written).toString()).toBe("one\ntwo\n[three]\n")
      expect(stream.writableFinished).toBe(true)
      expect(stream.destroyed).toBe(true)
      expect(yield* server.count).toBe(0)
    }))
})

/** The keep-alive timers of the established TCP sockets on 127.0.0.1 whose `side` port is `port`, as ss shows them. */
const keepAliveTimers = (side: "sport" | "dport", port: number): Array<string> => {
  const out = spawnSync("ss", ["-tnoH", "state", "established", `( ${side} = :${port} )`], { encoding: "utf8" })
  if (out.status !== 0) throw new Error(`ss failed: ${out.stderr}`)
  return out.stdout.split("\n").filter((row) => row.includes("keepalive"))
}

/** Seconds until the first probe of a keep-alive timer row. */
const dueIn = (row: string): number => Number(/keepalive,(\d+)sec/.exec(row)?.[1])

describe("socket options", () => {
  it.live("reusePort: two listeners bind one port and both accept; without it the second is refused", () =>
    Effect.gen(function*() {
      const first = yield* Listener.makeTcp({ host: "127.0.0.1", reusePort: true })
      assert(first.address._tag === "Inet")
      const port = first.address.port
      const second = yield* Listener.makeTcp({ host: "127.0.0.1", port, reusePort: true })
      expect(second.address).toEqual(first.address)
      const accepted = new Set<string>()
      const wakes = new Wakes()
      for (const [name, listener] of [["first", first], ["second", second]] as const) {
        yield* Effect.forkScoped(listener.accept((link) => {
          streamOf(link).destroy()
          accepted.add(name)
          wakes.wake()
        }))
      }
      // the kernel spreads connections by their addresses' hash: enough of them reach both
      for (let i = 0; i < 40 && accepted.size < 2; i++) {
        yield* rawConnect(port)
        yield* Effect.sleep("5 millis")
      }
      yield* wakes.until(() => accepted.size === 2, "5 seconds", () => `accepted by ${[...accepted].join(", ")}`)
      const refused = yield* Effect.flip(Listener.makeTcp({ host: "127.0.0.1", port }))
      expect(refused.message).toContain("EADDRINUSE")
    }))
  ;(ss.available ? it.live : it.live.skip)(
    `keepAlive probes the listener's and the client's sockets${ss.skipReason}`,
    () =>
      Effect.gen(function*() {
        ss.require()
        const listener = yield* Listener.makeTcp({
          host: "127.0.0.1",
          keepAlive: true,
          keepAliveInitialDelay: "30 seconds"
        })
        const server = yield* ChatServer.make(Echo).pipe(Effect.provideService(Listener.Listener, listener))
        const port = portOf(server)
        const client = yield* ChatClient.connect(
          ChatClient.tcp({ port, keepAlive: true, keepAliveInitialDelay: "45 seconds" }),
          { terminator: Terminator.lf }
        )
        yield* client.chat.push("hi\n")
        yield* Stream.runHead(client.input)
        // the accepted socket's first probe is due within 30 s, the client's within 45 s
        const accepted = keepAliveTimers("sport", port)
        expect(accepted.length).toBe(1)
        expect(dueIn(accepted[0])).toBeLessThanOrEqual(30)
        const connected = keepAliveTimers("dport", port)
        expect(connected.length).toBe(1)
        expect(dueIn(connected[0])).toBeGreaterThan(30)
        // without the option, no timer
        const plain = yield* tcpServer(Echo)
        const peer = yield* rawConnect(portOf(plain))
        yield* peer.write("x\n")
        yield* peer.receive("x\n")
        expect(keepAliveTimers("sport", portOf(plain))).toEqual([])
      })
  )
})

/** Answers each line with what the connection's TLS negotiated. */
const TlsEcho = Protocol.forEach(Terminator.lf, (frame) =>
  Effect.flatMap(Chat.Chat, (chat) =>
    chat.push(
      `${Buffer.from(frame.bytes).toString()}: alpn ${chat.tls?.alpnProtocol ?? "none"}, peer ${
        chat.tls?.peerCertificate?.subject.CN ?? "none"
      }, authorized ${chat.tls?.authorized ?? "n/a"}\n`
    )))

const tlsServer = (options: Partial<Listener.TlsOptions> = {}) =>
  Effect.gen(function*() {
    const pems = certificates()
    const listener = yield* Listener.makeTls({
      host: "127.0.0.1",
      key: pems.serverKey,
      cert: pems.serverCert,
      ...options
    })
    return yield* ChatServer.make(TlsEcho).pipe(Effect.provideService(Listener.Listener, listener))
  })

const askOnce = (connector: ChatClient.Connector, line: string) =>
  Effect.gen(function*() {
    const client = yield* ChatClient.connect(connector, { terminator: Terminator.lf })
    yield* client.chat.push(line, "\n")
    const answer = yield* Stream.runHead(client.input)
    return answer._tag === "Some" ? Buffer.from(answer.value.bytes).toString() : "nothing"
  })

describe("TLS", () => {
  it.live("negotiates ALPN, and the handle says what was agreed; without a client certificate, no peer", () =>
    Effect.gen(function*() {
      const pems = certificates()
      const server = yield* tlsServer({ ALPNProtocols: ["x-chat", "x-other"] })
      const answer = yield* askOnce(
        ChatClient.tls({ port: portOf(server), ca: pems.ca, servername: "localhost", ALPNProtocols: ["x-chat"] }),
        "hi"
      )
      expect(answer).toBe("hi: alpn x-chat, peer none, authorized false")
    }))

  it.live("asks for a client certificate: the handler sees who it is and that its CA is trusted", () =>
    Effect.gen(function*() {
      const pems = certificates()
      const server = yield* tlsServer({ requestCert: true, ca: pems.ca })
      const answer = yield* askOnce(
        ChatClient.tls({ port: portOf(server), ca: pems.ca, cert: pems.clientCert, key: pems.clientKey }),
        "hi"
      )
      expect(answer).toBe("hi: alpn none, peer alice, authorized true")
    }))

  it.live("a server certificate the client does not trust fails the connect, typed; the server serves others", () =>
    Effect.gen(function*() {
      const pems = certificates()
      const server = yield* tlsServer()
      const error = yield* Effect.flip(askOnce(ChatClient.tls({ port: portOf(server), ca: pems.otherCa }), "hi"))
      expect(error.reason._tag).toBe("ConnectFailed")
      expect(error.message).toMatch(/certificate/)
      expect(yield* askOnce(ChatClient.tls({ port: portOf(server), ca: pems.ca }), "next")).toMatch(/^next: /)
    }))
  it.live("a client that never finishes its handshake is dropped after handshakeTimeout; the server serves others", () =>
    Effect.gen(function*() {
      const pems = certificates()
      const server = yield* tlsServer({ handshakeTimeout: "200 millis" })
      // plaintext where a ClientHello should be: not TLS, so no handshake ever completes
      const silent = yield* rawConnect(portOf(server))
      const plaintext = yield* rawConnect(portOf(server))
      yield* plaintext.write("EHLO example\r\n")
      yield* silent.until("the server's close", (peer) => peer.closed || peer.ended, "3 seconds")
      yield* plaintext.until("the server's close", (peer) => peer.closed || peer.ended, "3 seconds")
      expect(silent.bytes).toBe(0)
      expect(yield* server.count).toBe(0)
      expect(yield* askOnce(ChatClient.tls({ port: portOf(server), ca: pems.ca }), "hi")).toMatch(/^hi: /)
    }))
  ;(openssl.available ? it.live : it.live.skip)(
    `openssl s_client talks to it${openssl.skipReason}`,
    () =>
      Effect.gen(function*() {
        const pems = certificates()
        const server = yield* tlsServer()
        const child = yield* spawnChild("openssl", [
          "s_client",
          "-connect",
          `127.0.0.1:${portOf(server)}`,
          "-CAfile",
          `${pems.dir}/ca.crt`,
          "-servername",
          "localhost",
          "-verify_return_error",
          "-quiet"
        ])
        let out = ""
        child.stdout!.on("data", (data: Buffer) => (out += data.toString()))
        child.stdin!.write("hello\n")
        yield* Effect.sleep("50 millis").pipe(Effect.repeat({ until: () => out.includes("\n"), times: 100 }))
        expect(out).toBe("hello: alpn none, peer none, authorized false\n")
      })
  )
})
