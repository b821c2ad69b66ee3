/**
 * `chat.startTls` beyond the transport suite's upgrades: what carries over (a machine's state, the idle
 * timeout), what is refused (a second upgrade, a client without the certificate a server requires), and a
 * machine's `Framing.pause`, which keeps the plaintext after STARTTLS uncut.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Fiber, Metric, Stream } from "effect"
import { TestClock } from "effect/testing"
import { Buffer } from "node:buffer"
import { Chat, ChatClient, ChatMetrics, ChatServer, Framing, Protocol, Terminator } from "../src/index.ts"
import { captureLogs } from "./helpers.ts"
import { connectLines, memory, readAll, readLines } from "./memory-helpers.ts"
import {
  portOf,
  rawConnect,
  RawPeer,
  settle,
  StartTlsEcho,
  startTlsServer,
  tcpServer,
  tlsClient
} from "./transport-helpers.ts"

const handshakeErrors = Metric.withAttributes(ChatMetrics.errors, { reason: "HandshakeFailed" })

/** Our client's upgrade, trusting the test authority; `cert` presents alice's certificate. */
const upgradeClient = (
  client: ChatClient.Client<Framing.Frame>,
  pems: ReturnType<typeof startTlsServer>["pems"],
  options: { readonly cert?: boolean } = {}
) =>
  client.chat.startTls({
    side: "client",
    ca: pems.ca,
    servername: "localhost",
    ALPNProtocols: ["x-chat"],
    ...(options.cert === true ? { cert: pems.clientCert, key: pems.clientKey } : {})
  })

describe("chat.startTls", () => {
  it.effect("a second STARTTLS, over TLS already, is refused, typed; the connection goes on over TLS", () =>
    Effect.gen(function*() {
      const { pems, tls } = startTlsServer()
      yield* ChatServer.make(StartTlsEcho(tls))
      const client = yield* connectLines
      yield* client.chat.push("STARTTLS\n")
      expect(yield* readLines(client, 3)).toEqual(["plain 1", "plain 2", "go ahead"])
      yield* upgradeClient(client, pems)
      yield* client.chat.push("STARTTLS\nafter\n")
      expect(yield* readLines(client, 6)).toEqual([
        "secure x-chat none",
        "plain 1",
        "plain 2",
        "go ahead",
        "refused: TLS handshake failed: the connection is already over TLS",
        "after tls"
      ])
      const again = yield* Effect.flip(upgradeClient(client, pems))
      expect(again.reason._tag).toBe("HandshakeFailed")
    }).pipe(Effect.provide(memory())))

  it.effect("the idle timeout bounds a handshake that never comes: the connection closes with IdleTimeout", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const { tls } = startTlsServer()
      const server = yield* ChatServer.make(StartTlsEcho(tls), { idleTimeout: "10 seconds" }).pipe(
        Effect.provide(logs.layer)
      )
      const client = yield* connectLines
      yield* client.chat.push("STARTTLS\n")
      expect(yield* readLines(client, 3)).toEqual(["plain 1", "plain 2", "go ahead"])
      const rest = yield* Effect.forkChild(readAll(client))
      yield* TestClock.adjust("9 seconds")
      expect(yield* server.count).toBe(1)
      yield* TestClock.adjust("2 seconds")
      expect(yield* Fiber.join(rest)).toBe("")
      expect(yield* server.count).toBe(0)
      expect(logs.find("connection closed by IdleTimeout")?.message).toBe(
        "connection closed by IdleTimeout: No input for 10s"
      )
    }).pipe(Effect.provide(memory())))

  it.effect("a server that requires a client certificate refuses a client without one, and takes one with", () =>
    Effect.gen(function*() {
      const pems = startTlsServer().pems
      const { tls: strict } = startTlsServer({ requestCert: true, rejectUnauthorized: true, ca: pems.ca })
      yield* ChatServer.make(StartTlsEcho(strict))
      const before = (yield* Metric.value(handshakeErrors)).count

      const anonymous = yield* connectLines
      yield* anonymous.chat.push("STARTTLS\n")
      yield* readLines(anonymous, 3)
      // under TLS 1.3 the client is done first: the server's refusal then closes the connection
      yield* upgradeClient(anonymous, pems).pipe(Effect.ignore)
      expect(yield* readAll(anonymous).pipe(Effect.orElseSucceed(() => ""))).toBe("")
      expect((yield* Metric.value(handshakeErrors)).count).toBe(before + 1)

      const alice = yield* connectLines
      yield* alice.chat.push("STARTTLS\n")
      yield* readLines(alice, 3)
      yield* upgradeClient(alice, pems, { cert: true })
      expect(yield* readLines(alice, 1)).toEqual(["secure x-chat alice authorized"])
    }).pipe(Effect.provide(memory())))

  it.effect("a server that asks for a certificate lets the handler judge it: authorized when its CA is trusted", () =>
    Effect.gen(function*() {
      const pems = startTlsServer().pems
      const { tls: asking } = startTlsServer({ requestCert: true, ca: pems.ca })
      yield* ChatServer.make(StartTlsEcho(asking))
      const alice = yield* connectLines
      yield* alice.chat.push("STARTTLS\n")
      yield* readLines(alice, 3)
      yield* upgradeClient(alice, pems, { cert: true })
      expect(yield* readLines(alice, 1)).toEqual(["secure x-chat alice authorized"])
      const anonymous = yield* connectLines
      yield* anonymous.chat.push("STARTTLS\n")
      yield* readLines(anonymous, 3)
      yield* upgradeClient(anonymous, pems)
      yield* anonymous.chat.push("still\n")
      expect(yield* readLines(anonymous, 2)).toEqual(["secure x-chat none", "still tls"])
    }).pipe(Effect.provide(memory())))

  it.effect("the idle period starts again after the handshake: a slow one does not eat the time after it", () =>
    Effect.gen(function*() {
      const { pems, tls } = startTlsServer()
      const server = yield* ChatServer.make(StartTlsEcho(tls), { idleTimeout: "10 seconds" })
      const client = yield* connectLines
      yield* client.chat.push("STARTTLS\n")
      yield* readLines(client, 3)
      yield* TestClock.adjust("9 seconds")
      yield* upgradeClient(client, pems)
      expect(yield* readLines(client, 1)).toEqual(["secure x-chat none"])
      const rest = yield* Effect.forkChild(readAll(client))
      yield* TestClock.adjust("2 seconds")
      expect(rest.pollUnsafe()).toBeUndefined()
      expect(yield* server.count).toBe(1)
      yield* TestClock.adjust("9 seconds")
      expect(yield* Fiber.join(rest)).toBe("")
    }).pipe(Effect.provide(memory())))

  it.effect("options Node cannot use (a key it cannot read) fail the upgrade with HandshakeFailed, not a defect", () =>
    Effect.gen(function*() {
      const defects = Metric.withAttributes(ChatMetrics.errors, { reason: "Defect" })
      const before = {
        handshake: (yield* Metric.value(handshakeErrors)).count,
        defect: (yield* Metric.value(defects)).count
      }
      const { tls } = startTlsServer({ key: "not a key" })
      const server = yield* ChatServer.make(StartTlsEcho(tls))
      const client = yield* connectLines
      yield* client.chat.push("STARTTLS\n")
      expect(yield* readAll(client)).toBe("plain 1\nplain 2\ngo ahead\n")
      expect(yield* server.count).toBe(0)
      expect((yield* Metric.value(handshakeErrors)).count).toBe(before.handshake + 1)
      expect((yield* Metric.value(defects)).count).toBe(before.defect)
    }).pipe(Effect.provide(memory())))
})

describe("chat.startTls over TCP", () => {
  it.live("a TLS record that does not decrypt, after the upgrade, closes the connection as over a TLS listener", () =>
    Effect.gen(function*() {
      const { pems, tls } = startTlsServer()
      const server = yield* tcpServer(StartTlsEcho(tls))
      const raw = yield* rawConnect(portOf(server))
      yield* raw.write("STARTTLS\n")
      yield* raw.receive("plain 1\nplain 2\ngo ahead\n")
      const secure = yield* tlsClient({ socket: raw.socket, ca: pems.ca, servername: "localhost" })
      secure.on("error", () => {})
      const overTls = new RawPeer(secure, false)
      yield* overTls.receive("secure x-chat none\n")
      // application data that is not the session's: under the TLS socket, to the TCP connection itself
      raw.socket.write(Buffer.concat([Buffer.from([0x17, 0x03, 0x03, 0x00, 0x20]), Buffer.alloc(32, 7)]))
      yield* settle(Effect.map(server.count, (n) => n === 0), "3 seconds")
      expect(yield* server.count).toBe(0)
    }))
})

/**
 * Numbered lines, and STARTTLS as a `Framing.pause`: the machine's count after the upgrade tells how many frames
 * it stepped, so a plaintext line after STARTTLS that it stepped (and the handler then discarded) would show.
 */
type Command = { readonly _tag: "StartTls" } | { readonly _tag: "Line"; readonly n: number; readonly text: string }
const Numbered = Framing.machine<number, Command>({
  initial: 0,
  terminator: () => Terminator.lf,
  step: (n, frame) => {
    const text = Buffer.from(frame.bytes).toString()
    return text === "STARTTLS"
      ? Framing.pause(n + 1, { _tag: "StartTls" })
      : Framing.next(n + 1, { _tag: "Line", n, text })
  }
})

const NumberedServer = (tls: Chat.StartTls) =>
  Protocol.forEach(Numbered, (command) =>
    Effect.gen(function*() {
      const chat = yield* Chat.Chat
      if (command._tag === "Line") {
        return yield* chat.push(`${command.n} ${command.text} ${chat.tls === undefined ? "plain" : "tls"}\n`)
      }
      yield* chat.push("go ahead\n")
      yield* chat.startTls(tls)
    }))

describe("Framing.pause", () => {
  it.effect("keeps the plaintext after STARTTLS uncut: the machine never steps it, and its state carries over", () =>
    Effect.gen(function*() {
      const { pems, tls } = startTlsServer()
      yield* ChatServer.make(NumberedServer(tls))
      const client = yield* connectLines
      yield* client.chat.push("a\nSTARTTLS\nRSET\n")
      expect(yield* readLines(client, 2)).toEqual(["0 a plain", "go ahead"])
      yield* upgradeClient(client, pems)
      yield* client.chat.push("b\n")
      // STARTTLS was frame 1; RSET, never stepped, is no frame at all
      expect(yield* readLines(client, 1)).toEqual(["2 b tls"])
    }).pipe(Effect.provide(memory())))

  it.effect("without an upgrade, the rest is cut on the next pull, in order", () =>
    Effect.gen(function*() {
      yield* ChatServer.make(Protocol.forEach(Numbered, (command) =>
        Chat.push(command._tag === "Line" ? `${command.n} ${command.text}\n` : "paused\n")))
      const client = yield* connectLines
      yield* client.chat.push("a\nSTARTTLS\nb\nc\n")
      expect(yield* readLines(client, 4)).toEqual(["0 a", "paused", "2 b", "3 c"])
    }).pipe(Effect.provide(memory())))

  it.effect("on a plain stream (`decode`) it is `next`: cutting goes on", () =>
    Effect.gen(function*() {
      const out = yield* Stream.make(Buffer.from("a\nSTART"), Buffer.from("TLS\nb\n")).pipe(
        Framing.decode(Numbered),
        Stream.map((command) => command._tag === "Line" ? `${command.n} ${command.text}` : "pause"),
        Stream.runCollect
      )
      expect(out).toEqual(["0 a", "pause", "2 b"])
    }))
})
