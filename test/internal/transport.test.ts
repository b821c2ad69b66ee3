/**
 * One transport, one suite: every kind of link a connection runs on (the in-memory pair, a Node Duplex pair,
 * a Unix socket, TCP, TLS, and an effect `Socket` over TCP) passes the same behaviours, since all of them run on the
 * one stream transport. Each kind is checked with a raw peer (a plain Duplex or socket, sharing none of our
 * code) and with our own `ChatClient`.
 */
import * as NodeSocket from "@effect/platform-node/NodeSocket"
import { describe, expect, it } from "@effect/vitest"
import { Context, Effect, Fiber, Layer, Ref, type Scope, Stream } from "effect"
import { Buffer } from "node:buffer"
import * as Net from "node:net"
import * as NodeStream from "node:stream"
import * as NodeTls from "node:tls"
import * as AsyncChat from "../../src/AsyncChat.ts"
import { Chat, ChatClient, ChatServer, Listener, Protocol, Terminator } from "../../src/index.ts"
import * as MemoryTransport from "../../src/MemoryTransport.ts"
import { streamOf } from "../helpers.ts"
import {
  certificates,
  CountLines,
  errorsOf,
  portOf,
  rawConnect,
  RawPeer,
  settle,
  socketPath,
  StartTlsEcho,
  startTlsServer,
  tcpServer,
  tlsClient
} from "../transport-helpers.ts"

/** A server on one kind of link, with how to reach it: our client's connector, and a raw peer. */
interface Served {
  readonly server: ChatServer.ChatServerShape
  readonly connector: ChatClient.Connector
  /** A raw peer; `paused`, it reads nothing until `socket.resume()`. */
  readonly raw: (
    options?: { readonly paused?: boolean }
  ) => Effect.Effect<RawPeer<NodeStream.Duplex>, unknown, Scope.Scope>
}

interface Kind {
  readonly name: string
  readonly serve: <E, R>(
    protocol: Protocol.Protocol<E, R>,
    options?: ChatServer.Options
  ) => Effect.Effect<Served, unknown, Scope.Scope | R>
}

/** A raw peer over `stream`, destroyed with the scope. */
const rawOver = (stream: NodeStream.Duplex, paused: boolean) =>
  Effect.acquireRelease(
    Effect.sync(() => {
      if (paused) stream.pause()
      return new RawPeer(stream, false)
    }),
    (peer) => Effect.sync(() => peer.socket.destroy())
  )

/** A raw peer over the socket `connect` opens, once its `ready` event says it is connected. */
const rawConnected = (connect: () => Net.Socket, ready: "connect" | "secureConnect", paused: boolean) =>
  Effect.flatMap(
    Effect.callback<Net.Socket, Error>((resume) => {
      const socket = connect()
      socket.once(ready, () => resume(Effect.succeed(socket)))
      socket.once("error", (error) => resume(Effect.fail(error)))
    }),
    (socket) => rawOver(socket, paused)
  )

const tcpRaw = (port: number) => (options: { readonly paused?: boolean } = {}) =>
  Effect.map(rawConnect(port, { paused: options.paused === true }), (peer) => peer as RawPeer<NodeStream.Duplex>)

const memory: Kind = {
  name: "the in-memory pair",
  serve: (protocol, options) =>
    Effect.gen(function*() {
      const context = yield* Layer.build(MemoryTransport.layer({ chunking: { random: 3, maxPiece: 4096 } }))
      const server = yield* ChatServer.make(protocol, options).pipe(Effect.provideContext(context))
      const connector = Context.get(context, MemoryTransport.MemoryTransport).connector
      return {
        server,
        connector,
        raw: (rawOptions = {}) =>
          Effect.flatMap(connector.open, (link) => rawOver(streamOf(link), rawOptions.paused === true))
      }
    })
}

/**
 * Node's own `duplexPair`, whose writes reach the other end inside the write itself: every re-entrant path of
 * ours is taken. A pipe pair knows nothing of its other end's close; the listener here tells each end of the
 * other's, as a socket pair's kernel does.
 */
const duplexPair: Kind = {
  name: "a Node Duplex pair",
  serve: (protocol, options) =>
    Effect.gen(function*() {
      const address = { _tag: "Pipe", name: "pair" } as const
      let accept: ((link: Listener.Link) => void) | undefined = undefined
      const listener = Listener.Listener.of({
        address,
        accept: (onConnection) =>
          Effect.callback<never>(() => {
            accept = onConnection
            return Effect.sync(() => {
              accept = undefined
            })
          }),
        stopAccepting: Effect.void
      })
      const server = yield* ChatServer.make(protocol, options).pipe(Effect.provideService(Listener.Listener, listener))
      const pair = () => {
        const [ours, theirs] = NodeStream.duplexPair()
        ours.once("close", () => theirs.destroy())
        theirs.once("close", () => ours.destroy())
        accept!(Listener.fromStream(ours, { localAddress: address, remoteAddress: address }))
        return theirs
      }
      const connector: ChatClient.Connector = {
        target: "pipe:pair",
        open: Effect.sync(() => Listener.fromStream(pair(), { localAddress: address, remoteAddress: address }))
      }
      return { server, connector, raw: (rawOptions = {}) => rawOver(pair(), rawOptions.paused === true) }
    })
}

const unix: Kind = {
  name: "a Unix socket",
  serve: (protocol, options) =>
    Effect.gen(function*() {
      const path = yield* socketPath
      const listener = yield* Listener.makeUnix({ path })
      const server = yield* ChatServer.make(protocol, options).pipe(Effect.provideService(Listener.Listener, listener))
      return {
        server,
        connector: ChatClient.unix(path),
        raw: (rawOptions = {}) =>
          rawConnected(() => Net.createConnection({ path, allowHalfOpen: true }), "connect", rawOptions.paused === true)
      }
    })
}

const tcp: Kind = {
  name: "TCP",
  serve: (protocol, options) =>
    Effect.map(tcpServer(protocol, options), (server) => ({
      server,
      connector: ChatClient.tcp({ port: portOf(server) }),
      raw: tcpRaw(portOf(server))
    }))
}

/** TLS over TCP, with certificates made at test time: a raw `node:tls` peer, and our `ChatClient.tls`. */
const tls: Kind = {
  name: "TLS",
  serve: (protocol, options) =>
    Effect.gen(function*() {
      const pems = certificates()
      const listener = yield* Listener.makeTls({ host: "127.0.0.1", key: pems.serverKey, cert: pems.serverCert })
      const server = yield* ChatServer.make(protocol, options).pipe(Effect.provideService(Listener.Listener, listener))
      const port = portOf(server)
      return {
        server,
        connector: ChatClient.tls({ port, ca: pems.ca, servername: "localhost" }),
        raw: (rawOptions = {}) => {
          // half-open, as our own sockets: the raw peer may end its side and still read the answer
          const options: NodeTls.ConnectionOptions & { readonly allowHalfOpen: boolean } = {
            host: "127.0.0.1",
            port,
            ca: pems.ca,
            servername: "localhost",
            allowHalfOpen: true
          }
          return rawConnected(() => NodeTls.connect(options), "secureConnect", rawOptions.paused === true)
        }
      }
    })
}

/** What the server accepts is an effect `Socket` over each TCP connection, and the client connects with one. */
const effectSocket: Kind = {
  name: "an effect Socket over TCP",
  serve: (protocol, options) =>
    Effect.gen(function*() {
      const tcpListener = yield* Listener.makeTcp({ host: "127.0.0.1" })
      const services = yield* Effect.context<never>()
      const listener = Listener.Listener.of({
        address: tcpListener.address,
        accept: (onConnection) =>
          tcpListener.accept((link) => {
            if (link._tag !== "Stream") throw new Error("a TCP listener accepts streams")
            const socket = Effect.runSyncWith(services)(NodeSocket.fromDuplex(Effect.succeed(link.stream)))
            onConnection(Listener.fromSocket(socket, link))
          }),
        stopAccepting: tcpListener.stopAccepting
      })
      const server = yield* ChatServer.make(protocol, options).pipe(Effect.provideService(Listener.Listener, listener))
      const port = portOf(server)
      const connector: ChatClient.Connector = {
        target: `127.0.0.1:${port}`,
        open: Effect.map(
          NodeSocket.makeNet({ host: "127.0.0.1", port }),
          (socket) =>
            Listener.fromSocket(socket, {
              localAddress: { _tag: "Pipe", name: "effect-socket" },
              remoteAddress: { _tag: "Inet", host: "127.0.0.1", port }
            })
        )
      }
      return { server, connector, raw: tcpRaw(port) }
    })
}

/** Echoes each line; `flood` answers with `FLOOD` bytes in 64 KiB pushes, counted in `pushed`. */
const FLOOD = 16 * 1024 * 1024
const floodOrEcho = (pushed: Ref.Ref<number>) =>
  Protocol.forEach(Terminator.lf, (frame) =>
    Buffer.from(frame.bytes).toString() === "flood"
      ? Effect.forEach(
        Array.from({ length: FLOOD / 65536 }),
        () => Effect.andThen(Chat.push(Buffer.alloc(65536, "z")), Ref.update(pushed, (n) => n + 65536)),
        { discard: true }
      )
      : Chat.push(frame.bytes, "\n"))

/** Answers, then closes once the answer is out. */
const Bye = Protocol.forEach(Terminator.lf, () => Effect.andThen(Chat.push("bye\n"), Chat.closeWhenDone))

/** asynchat's style: a `LEN n` line switches the terminator to a body of n bytes, echoed in brackets. */
const Lengths = AsyncChat.make({
  terminator: Terminator.lf,
  foundTerminator: (frame) =>
    Effect.gen(function*() {
      const chat = yield* AsyncChat.AsyncChat
      const current = yield* chat.terminator
      const line = Buffer.from(frame.bytes).toString("latin1")
      if (current._tag === "Length") {
        yield* Chat.push(`[${line}]\n`)
        yield* chat.setTerminator(Terminator.lf)
      } else if (line.startsWith("LEN ")) {
        yield* chat.setTerminator(Terminator.length(Number(line.slice(4))))
      } else {
        yield* Chat.push(`${line}\n`)
      }
    })
})

for (const kind of [memory, duplexPair, unix, tcp, tls, effectSocket]) {
  describe(`the transport over ${kind.name}`, () => {
    it.live("echoes lines sent in one write and lines split across writes", () =>
      Effect.gen(function*() {
        const { raw } = yield* kind.serve(floodOrEcho(yield* Ref.make(0)))
        const peer = yield* raw()
        yield* peer.write("one\ntwo\n")
        yield* peer.write("thr")
        yield* Effect.sleep("10 millis")
        yield* peer.write("ee\n")
        yield* peer.receive("one\ntwo\nthree\n")
        expect(peer.text).toBe("one\ntwo\nthree\n")
      }))

    it.live("carries 2 MB each way between our client and our server, in order", () =>
      Effect.gen(function*() {
        const { connector } = yield* kind.serve(floodOrEcho(yield* Ref.make(0)))
        const client = yield* ChatClient.connect(connector, { terminator: Terminator.lf })
        const lines = Array.from({ length: 20_000 }, (_, i) => `line ${i} ${"x".repeat(90)}`)
        const echoed = yield* Effect.forkChild(
          client.input.pipe(
            Stream.take(lines.length),
            Stream.map((frame) => Buffer.from(frame.bytes).toString()),
            Stream.runCollect
          )
        )
        yield* Effect.forEach(lines, (line) => client.chat.push(line, "\n"), { discard: true })
        expect(yield* Fiber.join(echoed)).toEqual(lines)
      }))

    it.live("switches the terminator mid-stream exactly as asynchat does, however the bytes arrive", () =>
      Effect.gen(function*() {
        const { raw } = yield* kind.serve(Lengths)
        const peer = yield* raw()
        yield* peer.write("a\nLEN 5\nx\ny\nzb\nLEN 3\n")
        yield* Effect.sleep("10 millis")
        yield* peer.write("abcc\n")
        yield* peer.receive("a\n[x\ny\nz]\nb\n[abc]\nc\n")
        expect(peer.text).toBe("a\n[x\ny\nz]\nb\n[abc]\nc\n")
      }))

    it.live("reads to the peer's end of input, answers after it, then ends its side too", () =>
      Effect.gen(function*() {
        const { raw } = yield* kind.serve(CountLines)
        const peer = yield* raw()
        peer.socket.end("a\nb\nc")
        yield* peer.until("the server's end", (p) => p.ended)
        expect(peer.text).toBe("got 3 lines\n")
      }))

    it.live("closeWhenDone: the peer gets the whole answer, then the end", () =>
      Effect.gen(function*() {
        const { raw, server } = yield* kind.serve(Bye)
        const peer = yield* raw()
        yield* peer.write("hi\n")
        yield* peer.until("the server's end", (p) => p.ended)
        expect(peer.text).toBe("bye\n")
        yield* settle(Effect.map(server.count, (n) => n === 0))
        expect(yield* server.count).toBe(0)
      }))

    it.live(
      "a peer that reads nothing stops the pushes; once it reads, every byte arrives",
      () =>
        Effect.gen(function*() {
          const pushed = yield* Ref.make(0)
          const { raw } = yield* kind.serve(floodOrEcho(pushed))
          const peer = yield* raw({ paused: true })
          yield* peer.write("flood\n")
          yield* Effect.sleep("300 millis")
          const stalled = yield* Ref.get(pushed)
          expect(stalled).toBeLessThan(FLOOD)
          yield* Effect.sleep("100 millis")
          expect(yield* Ref.get(pushed)).toBe(stalled)
          peer.socket.resume()
          yield* peer.until(`${FLOOD} bytes`, (p) => p.bytes >= FLOOD, "20 seconds")
          expect(peer.bytes).toBe(FLOOD)
        }),
      30_000
    )

    it.live("a peer that vanishes in the middle of a write closes its own connection only", () =>
      Effect.gen(function*() {
        const { raw, server } = yield* kind.serve(floodOrEcho(yield* Ref.make(0)))
        const other = yield* raw()
        const leaving = yield* raw({ paused: true })
        yield* leaving.write("flood\n")
        yield* settle(Effect.map(server.count, (n) => n === 2))
        yield* Effect.sleep("50 millis")
        leaving.socket.destroy()
        yield* settle(Effect.map(server.count, (n) => n === 1), "5 seconds")
        expect(yield* server.count).toBe(1)
        yield* other.write("still here\n")
        yield* other.receive("still here\n")
      }))

    if (kind === tls) {
      it.live("STARTTLS on a connection already over TLS is refused, typed, and the connection goes on", () =>
        Effect.gen(function*() {
          const { tls: options } = startTlsServer()
          const { raw } = yield* kind.serve(StartTlsEcho(options))
          const peer = yield* raw()
          yield* peer.write("STARTTLS\nafter\n")
          const expected = "plain 1\nplain 2\ngo ahead\n" +
            "refused: TLS handshake failed: the connection is already over TLS\nafter tls\n"
          yield* peer.receive(expected)
          expect(peer.text).toBe(expected)
        }))
    } else {
      it.live(
        "STARTTLS: plaintext queued before it goes out first; plaintext pipelined after it is never read; then TLS",
        () =>
          Effect.gen(function*() {
            const { pems, tls: options } = startTlsServer()
            const { raw } = yield* kind.serve(StartTlsEcho(options))
            const peer = yield* raw()
            // the RSET after STARTTLS, in the same write, must not run: RFC 3207 section 4.2
            yield* peer.write("hello\nSTARTTLS\nRSET\n")
            yield* peer.receive("hello plain\nplain 1\nplain 2\ngo ahead\n")
            expect(peer.text).toBe("hello plain\nplain 1\nplain 2\ngo ahead\n")
            const secure = yield* tlsClient({
              socket: peer.socket,
              ca: pems.ca,
              servername: "localhost",
              ALPNProtocols: ["x-chat"]
            })
            const overTls = new RawPeer(secure, false)
            yield* overTls.write("ping\n")
            yield* overTls.receive("secure x-chat none\nping tls\n")
            expect(overTls.text).toBe("secure x-chat none\nping tls\n")
          })
      )

      it.live("STARTTLS from our client: both ends upgrade in place, and the handles say what was negotiated", () =>
        Effect.gen(function*() {
          const { pems, tls: options } = startTlsServer()
          const { connector } = yield* kind.serve(StartTlsEcho(options))
          const client = yield* ChatClient.connect(connector, { terminator: Terminator.lf })
          const lines = (n: number) =>
            client.input.pipe(
              Stream.take(n),
              Stream.map((frame) => Buffer.from(frame.bytes).toString()),
              Stream.runCollect
            )
          yield* client.chat.push("STARTTLS\n")
          expect(yield* lines(3)).toEqual(["plain 1", "plain 2", "go ahead"])
          const info = yield* client.chat.startTls({
            side: "client",
            ca: pems.ca,
            servername: "localhost",
            ALPNProtocols: ["x-chat"]
          })
          expect(info.alpnProtocol).toBe("x-chat")
          expect(info.peerCertificate?.subject.CN).toBe("localhost")
          expect(client.chat.tls?.authorized).toBe(true)
          yield* client.chat.push("ping\n")
          expect(yield* lines(2)).toEqual(["secure x-chat none", "ping tls"])
        }))

      it.live("a handshake that fails after STARTTLS closes that connection only, with a typed error", () =>
        Effect.gen(function*() {
          const before = yield* errorsOf("HandshakeFailed")
          const { tls: options } = startTlsServer()
          const { raw, server } = yield* kind.serve(StartTlsEcho(options))
          const other = yield* raw()
          const peer = yield* raw()
          yield* peer.write("STARTTLS\n")
          yield* peer.receive("plain 1\nplain 2\ngo ahead\n")
          // plaintext where the handshake should be
          yield* peer.write("RSET\r\nQUIT\r\n")
          yield* peer.until("the server's close", (p) => p.closed || p.ended)
          expect(peer.text).toBe("plain 1\nplain 2\ngo ahead\n")
          yield* settle(Effect.map(errorsOf("HandshakeFailed"), (n) => n === before + 1))
          expect(yield* errorsOf("HandshakeFailed")).toBe(before + 1)
          expect(yield* server.count).toBe(1)
          yield* other.write("still here\n")
          yield* other.receive("still here plain\n")
        }))
    }

    it.live("writeTimeout lets go of a peer that stopped reading, and only of it", () =>
      Effect.gen(function*() {
        const before = yield* errorsOf("WriteTimeout")
        const { raw, server } = yield* kind.serve(floodOrEcho(yield* Ref.make(0)), { writeTimeout: "300 millis" })
        const other = yield* raw()
        const stuck = yield* raw({ paused: true })
        yield* stuck.write("flood\n")
        yield* settle(Effect.map(server.count, (n) => n === 2))
        yield* settle(Effect.map(server.count, (n) => n === 1), "5 seconds")
        expect(yield* errorsOf("WriteTimeout")).toBe(before + 1)
        yield* other.write("still here\n")
        yield* other.receive("still here\n")
      }))
  })
}
