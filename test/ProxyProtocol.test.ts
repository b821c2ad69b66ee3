/**
 * The PROXY protocol: the decoder on hand-made v1 and v2 headers, listeners that read them over TCP and TLS
 * (every chunking, protocol bytes in the header's read, failures that close only their own connection), and a
 * real HAProxy in front of a server with `send-proxy` and `send-proxy-v2`.
 */
import { assert, describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Metric, Scope } from "effect"
import { Buffer } from "node:buffer"
import * as Net from "node:net"
import * as NodeTls from "node:tls"
import { Chat, ChatMetrics, ChatServer, Listener, Protocol, ProxyProtocol, Terminator } from "../src/index.ts"
import { captureLogs } from "./helpers.ts"
import { haproxy } from "./tools.ts"
import { certificates, exitOf, portOf, rawConnect, settle, startHaproxy } from "./transport-helpers.ts"

// --- hand-made headers ---

const v1 = (line: string) => Buffer.from(`PROXY ${line}\r\n`, "latin1")

const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])

/** A v2 header: version 2, `command` (0 LOCAL, 1 PROXY), `family` (its high nibble) and transport, its body. */
const v2 = (command: number, familyTransport: number, body: Uint8Array, length = body.length) => {
  const fixed = Buffer.alloc(4)
  fixed[0] = 0x20 | command
  fixed[1] = familyTransport
  fixed.writeUInt16BE(length, 2)
  return Buffer.concat([V2_SIGNATURE, fixed, body])
}

const ipv4 = (host: string) => Buffer.from(host.split(".").map(Number))
const groupsOf = (part: string) => (part === "" ? [] : part.split(":"))
const ipv6 = (host: string) => {
  // expanded by Node, then 8 groups of 16 bits
  const expanded = new Net.SocketAddress({ address: host, family: "ipv6" })
  const [head, tail = ""] = expanded.address.split("::")
  const h = groupsOf(head)
  // an IPv4-mapped tail ("::ffff:10.0.0.1") is two groups
  const t = groupsOf(tail).flatMap((g) => {
    if (!g.includes(".")) return [g]
    const [a, b, c, d] = g.split(".").map(Number)
    return [((a << 8) | b).toString(16), ((c << 8) | d).toString(16)]
  })
  const all = [...h, ...Array.from({ length: 8 - h.length - t.length }, () => "0"), ...t]
  return Buffer.concat(all.map((g) => Buffer.from([parseInt(g, 16) >> 8, parseInt(g, 16) & 0xff])))
}
const port16 = (port: number) => Buffer.from([port >> 8, port & 0xff])
/** A TLV: type, 2-byte length, value. */
const tlv = (type: number, value: string) =>
  Buffer.concat([Buffer.from([type]), port16(value.length), Buffer.from(value)])

/** A v2 UNIX address field: 108 bytes, NUL-padded. */
const unixPath = (path: string) => Buffer.concat([Buffer.from(path), Buffer.alloc(108 - path.length)])

const inet = (host: string, port: number): Chat.Address => ({ _tag: "Inet", host, port })

interface Case {
  readonly name: string
  readonly header: Buffer
  /** What the handler sees, or undefined: the socket's own addresses. */
  readonly remote: Chat.Address | undefined
  readonly local: Chat.Address | undefined
}

const cases: ReadonlyArray<Case> = [
  {
    name: "v1 TCP4",
    header: v1("TCP4 203.0.113.7 198.51.100.1 51000 443"),
    remote: inet("203.0.113.7", 51000),
    local: inet("198.51.100.1", 443)
  },
  {
    name: "v1 TCP6",
    header: v1("TCP6 2001:db8:0:0:0:0:0:7 2001:db8::1 65535 8080"),
    remote: inet("2001:db8::7", 65535),
    local: inet("2001:db8::1", 8080)
  },
  {
    name: "v1 UNKNOWN",
    header: v1("UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535"),
    remote: undefined,
    local: undefined
  },
  {
    name: "v2 IPv4 with TLVs",
    header: v2(
      1,
      0x11,
      Buffer.concat([
        ipv4("203.0.113.7"),
        ipv4("198.51.100.1"),
        port16(51000),
        port16(443),
        tlv(0x01, "h2"),
        tlv(0x02, "example.com")
      ])
    ),
    remote: inet("203.0.113.7", 51000),
    local: inet("198.51.100.1", 443)
  },
  {
    name: "v2 IPv6",
    header: v2(1, 0x21, Buffer.concat([ipv6("2001:db8::7"), ipv6("::ffff:10.0.0.1"), port16(1), port16(2)])),
    remote: inet("2001:db8::7", 1),
    local: inet("::ffff:10.0.0.1", 2)
  },
  {
    name: "v2 LOCAL with an address block and TLVs to skip",
    header: v2(0, 0x11, Buffer.concat([ipv4("1.2.3.4"), ipv4("5.6.7.8"), port16(1), port16(2), tlv(0x04, "noop")])),
    remote: undefined,
    local: undefined
  },
  { name: "v2 PROXY UNSPEC", header: v2(1, 0x00, Buffer.alloc(0)), remote: undefined, local: undefined }
]

/** Feeds `bytes` to the decoder as a reader would: growing by `size` bytes, until it says something. */
const decodeChunked = (bytes: Uint8Array, size: number): { decoded: ProxyProtocol.Decoded; fed: number } => {
  for (let fed = Math.min(size, bytes.length);; fed = Math.min(fed + size, bytes.length)) {
    const decoded = ProxyProtocol.decode(bytes.subarray(0, fed))
    if (decoded._tag !== "NeedMore" || fed === bytes.length) return { decoded, fed }
  }
}

describe("ProxyProtocol.decode", () => {
  for (const c of cases) {
    it(`${c.name}: one header at every chunking, its length exact, the bytes after it left alone`, () => {
      const input = Buffer.concat([c.header, Buffer.from("PING\r\n")])
      for (let size = 1; size <= input.length; size++) {
        const { decoded } = decodeChunked(input, size)
        assert(decoded._tag === "Header", `${size}: ${JSON.stringify(decoded)}`)
        expect(decoded.length).toBe(c.header.length)
        expect(decoded.header.source).toEqual(c.remote)
        expect(decoded.header.destination).toEqual(c.local)
      }
    })
  }

  it("a v2 UNIX header names both paths", () => {
    const decoded = ProxyProtocol.decode(
      v2(1, 0x31, Buffer.concat([unixPath("/run/client.sock"), unixPath("/run/haproxy.sock")]))
    )
    assert(decoded._tag === "Header")
    expect(decoded.header).toEqual({
      version: 2,
      command: "PROXY",
      source: { _tag: "Unix", path: "/run/client.sock" },
      destination: { _tag: "Unix", path: "/run/haproxy.sock" }
    })
  })

  const invalid: ReadonlyArray<readonly [string, Uint8Array, RegExp]> = [
    ["no header at all", Buffer.from("GET / HTTP/1.1\r\n"), /no PROXY header: the connection began with "G/],
    ["a v1 line without CR", Buffer.from("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), /CRLF/],
    ["a v1 IPv4 that is not one", v1("TCP4 1.2.3 5.6.7.8 1 2"), /invalid address or port/],
    ["a v1 IPv6 address under TCP4", v1("TCP4 ::1 5.6.7.8 1 2"), /invalid address or port/],
    ["a v1 port over 65535", v1("TCP4 1.2.3.4 5.6.7.8 65536 2"), /invalid address or port/],
    ["a v1 port with a leading zero", v1("TCP4 1.2.3.4 5.6.7.8 01 2"), /invalid address or port/],
    ["a v1 field too many", v1("TCP4 1.2.3.4 5.6.7.8 1 2 3"), /not "PROXY TCP4 src dst sport dport"/],
    ["a v1 double space", v1("TCP4 1.2.3.4  5.6.7.8 1 2"), /not "PROXY TCP4/],
    ["a v1 protocol of its own", v1("UDP4 1.2.3.4 5.6.7.8 1 2"), /unknown protocol/],
    ["a v1 header over 107 bytes", Buffer.from(`PROXY TCP4 ${"1".repeat(120)}`), /longer than 107 bytes/],
    ["a v2 version 1", Buffer.concat([V2_SIGNATURE, Buffer.from([0x11, 0x11, 0, 0])]), /version 1/],
    ["a v2 command 2", Buffer.concat([V2_SIGNATURE, Buffer.from([0x22, 0x11, 0, 0])]), /unknown command 2/],
    [
      "a v2 length over the bound",
      Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]),
      /65551 bytes, over the 4112 allowed/
    ],
    ["a v2 IPv4 block too short", v2(1, 0x11, Buffer.alloc(8)), /8 bytes of addresses, fewer than its family's 12/],
    ["a v2 datagram", v2(1, 0x12, Buffer.alloc(12)), /a datagram, not a stream/],
    ["a v2 family of its own", v2(1, 0x41, Buffer.alloc(12)), /unknown address family 4/],
    [
      "a v2 signature gone wrong at its last byte",
      Buffer.concat([V2_SIGNATURE.subarray(0, 11), Buffer.from("X")]),
      /no PROXY header/
    ]
  ]
  for (const [name, input, message] of invalid) {
    it(`fails on ${name}, at every chunking, as soon as it can tell`, () => {
      for (let size = 1; size <= input.length; size++) {
        const { decoded } = decodeChunked(input, size)
        assert(decoded._tag === "Invalid", `${size}: ${JSON.stringify(decoded)}`)
        expect(decoded.message).toMatch(message)
      }
    })
  }

  it("asks for more only while a header can still be complete within its bound", () => {
    expect(ProxyProtocol.decode(Buffer.from("PROXY TCP4 1.2.3.4 "))._tag).toBe("NeedMore")
    expect(ProxyProtocol.decode(Buffer.from(`PROXY ${"x".repeat(100)}`))._tag).toBe("NeedMore")
    expect(ProxyProtocol.decode(Buffer.from(`PROXY ${"x".repeat(101)}`))._tag).toBe("Invalid")
    // a v2 header of the largest length taken needs all of it, and no more
    const biggest = v2(1, 0x11, Buffer.alloc(4096))
    expect(ProxyProtocol.decode(biggest.subarray(0, biggest.length - 1))._tag).toBe("NeedMore")
    expect(ProxyProtocol.decode(biggest)._tag).toBe("Header")
  })
})

// --- listeners ---

/** Answers each line with who the connection says its peer is and where it connected. */
const Who = Protocol.forEach(Terminator.lf, (frame) =>
  Effect.flatMap(Chat.Chat, (chat) =>
    chat.push(
      `${Chat.formatAddress(chat.remoteAddress)} ${Chat.formatAddress(chat.localAddress)} ${
        Buffer.from(frame.bytes).toString()
      }${chat.tls === undefined ? "" : " tls"}\n`
    )))

const proxiedServer = (proxyProtocol: ProxyProtocol.Options) =>
  Effect.flatMap(
    Listener.makeTcp({ host: "127.0.0.1", noDelay: true, proxyProtocol }),
    (listener) => ChatServer.make(Who).pipe(Effect.provideService(Listener.Listener, listener))
  )

/** Writes `bytes` `size` at a time, a few milliseconds apart, so that the server reads them one by one. */
const writeInChunks = (socket: Net.Socket, bytes: Uint8Array, size: number) =>
  Effect.forEach(
    Array.from({ length: Math.ceil(bytes.length / size) }, (_, i) => bytes.subarray(i * size, (i + 1) * size)),
    (chunk) => Effect.andThen(Effect.sync(() => socket.write(chunk)), Effect.sleep("2 millis")),
    { discard: true }
  )

const errorsOf = (reason: string) =>
  Effect.map(Metric.value(Metric.withAttributes(ChatMetrics.errors, { reason })), (state) => state.count)

describe("Listener.makeTcp with proxyProtocol", () => {
  for (const c of cases) {
    it.live(
      `${c.name}: the handler sees the header's addresses at every chunking, the bytes after it intact`,
      () =>
        Effect.gen(function*() {
          const server = yield* proxiedServer({ trusted: ["127.0.0.1"] })
          const port = portOf(server)
          // the protocol's bytes follow the header in the same write when the whole is one chunk
          const input = Buffer.concat([c.header, Buffer.from("hello\nworld\n")])
          yield* Effect.forEach(
            Array.from({ length: input.length }, (_, i) => i + 1),
            (size) =>
              Effect.gen(function*() {
                const peer = yield* rawConnect(port)
                peer.socket.setNoDelay(true)
                yield* writeInChunks(peer.socket, input, size)
                const remote = c.remote ?? inet("127.0.0.1", peer.socket.localPort!)
                const local = c.local ?? inet("127.0.0.1", port)
                const who = `${Chat.formatAddress(remote)} ${Chat.formatAddress(local)}`
                const expected = `${who} hello\n${who} world\n`
                yield* peer.receive(expected)
                expect(peer.text, `chunks of ${size}`).toBe(expected)
              }).pipe(Effect.scoped),
            { concurrency: 16, discard: true }
          )
        }),
      60_000
    )
  }

  it.live(
    "a bad header closes only its own connection, with ProxyHeaderInvalid, logged with its id and peer",
    () =>
      Effect.gen(function*() {
        const logs = captureLogs()
        const before = yield* errorsOf("ProxyHeaderInvalid")
        yield* Effect.gen(function*() {
          const server = yield* proxiedServer({ trusted: ["127.0.0.1", "::1"], timeout: "300 millis" })
          const port = portOf(server)
          const good = yield* rawConnect(port)
          yield* good.write("PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nbefore\n")
          yield* good.receive("192.0.2.1:1000 192.0.2.2:2000 before\n")
          const bad = [
            "GET / HTTP/1.1\r\n\r\n", // none
            "PROXY TCP4 1.2.3 4.5.6.7 1 2\r\nhello\n", // malformed
            `PROXY TCP4 ${"9".repeat(200)}\r\n`, // over 107 bytes
            Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]).toString("latin1") // v2 over its bound
          ]
          const peers = []
          for (const bytes of bad) {
            const peer = yield* rawConnect(port)
            peer.socket.write(Buffer.from(bytes, "latin1"))
            peers.push(peer)
          }
          // truncated: half a header, then the peer's FIN
          const truncated = yield* rawConnect(port)
          truncated.socket.end("PROXY TCP4 1.2.3.4")
          // slow: half a header, then nothing, past the timeout
          const slow = yield* rawConnect(port)
          yield* slow.write("PROXY TCP4 1.2.3.4 ")
          for (const peer of [...peers, truncated, slow]) {
            yield* peer.until("the server's close", (p) => p.closed || p.ended || p.error !== undefined, "3 seconds")
            expect(peer.bytes).toBe(0)
          }
          // the good one is still served, and so is a new one
          yield* good.write("after\n")
          yield* good.receive("192.0.2.1:1000 192.0.2.2:2000 before\n192.0.2.1:1000 192.0.2.2:2000 after\n")
          const next = yield* rawConnect(port)
          yield* next.write("PROXY TCP6 ::1 ::2 3 4\r\nnext\n")
          yield* next.receive("[::1]:3 [::2]:4 next\n")
          expect(yield* server.count).toBe(2)
          yield* Effect.sleep("50 millis")
        }).pipe(Effect.scoped, Effect.provide(logs.layer))
        expect((yield* errorsOf("ProxyHeaderInvalid")) - before).toBe(6)
        const closes = logs.lines.filter((line) => line.message.startsWith("connection closed by ProxyHeaderInvalid"))
        expect(closes.map((line) => line.message.replace(/^connection closed by ProxyHeaderInvalid: /, "")).toSorted())
          .toEqual([
            "Invalid PROXY header: PROXY v1 header longer than 107 bytes",
            "Invalid PROXY header: PROXY v1 header with an invalid address or port: \"PROXY TCP4 1.2.3 4.5.6.7 1 2\"",
            "Invalid PROXY header: PROXY v2 header of 65551 bytes, over the 4112 allowed",
            "Invalid PROXY header: no PROXY header: the connection began with \"GET / HTTP/1.1\\r\\n\"",
            "Invalid PROXY header: none complete within 300ms",
            "Invalid PROXY header: the peer closed after 18 bytes of an incomplete header"
          ])
        for (const line of closes) {
          expect(line.level).toBe("Warn")
          // the peer is the socket's: the proxy's address, as no header said otherwise
          expect(line.annotations).toMatchObject({
            connection: expect.any(Number),
            peer: expect.stringMatching(/^127\.0\.0\.1:\d+$/)
          })
        }
      }),
    20_000
  )

  it.live("a peer that hangs up before a byte is a routine ReadFailed, logged at Debug", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      yield* Effect.gen(function*() {
        const server = yield* proxiedServer({ trusted: ["127.0.0.1"] })
        const peer = yield* rawConnect(portOf(server))
        peer.socket.end()
        yield* peer.until("the server's close", (p) => p.closed || p.ended, "3 seconds")
        yield* Effect.sleep("50 millis")
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      const line = logs.find("connection closed by ReadFailed")
      assert(line !== undefined, logs.messages())
      expect(line.message).toContain("the peer closed before sending a PROXY header")
      expect(line.level).toBe("Debug")
    }))

  it.live("a connection from a source not trusted is refused with ProxyUntrusted before it is read; others are served", () =>
    Effect.gen(function*() {
      const logs = captureLogs()
      const before = yield* errorsOf("ProxyUntrusted")
      yield* Effect.gen(function*() {
        // 127.0.0.1 is not in these: the listener's own loopback clients are not proxies
        const untrusting = yield* proxiedServer({ trusted: ["10.0.0.0/8", "::1"] })
        const peer = yield* rawConnect(portOf(untrusting))
        yield* peer.write("PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nhello\n")
        yield* peer.until("the server's close", (p) => p.closed || p.ended || p.error !== undefined, "3 seconds")
        expect(peer.bytes).toBe(0)
        // a CIDR block that holds 127.0.0.1 trusts it
        const trusting = yield* proxiedServer({ trusted: ["127.0.0.0/8"] })
        const ok = yield* rawConnect(portOf(trusting))
        yield* ok.write("PROXY TCP4 192.0.2.1 192.0.2.2 1000 2000\r\nhello\n")
        yield* ok.receive("192.0.2.1:1000 192.0.2.2:2000 hello\n")
        yield* Effect.sleep("50 millis")
      }).pipe(Effect.scoped, Effect.provide(logs.layer))
      expect((yield* errorsOf("ProxyUntrusted")) - before).toBe(1)
      const line = logs.find("connection closed by ProxyUntrusted")
      assert(line !== undefined, logs.messages())
      expect(line.message).toMatch(/Connection from 127\.0\.0\.1:\d+, which is not a trusted proxy/)
      expect(line.level).toBe("Warn")
    }))

  it.live("a connection whose header is still coming when the listener closes is closed with it", () =>
    Effect.gen(function*() {
      const scope = yield* Scope.make()
      const server = yield* proxiedServer({ trusted: ["127.0.0.1"], timeout: "1 minute" }).pipe(Scope.provide(scope))
      const peer = yield* rawConnect(portOf(server))
      yield* peer.write("PROXY TCP4 1.2.3.4 ")
      yield* Effect.sleep("50 millis")
      yield* Scope.close(scope, Exit.void)
      yield* peer.until("the listener's close", (p) => p.closed || p.ended || p.error !== undefined, "2 seconds")
      expect(peer.bytes).toBe(0)
    }))

  it.live("a trusted entry that is no address or CIDR block fails the listener's open, saying which", () =>
    Effect.gen(function*() {
      const error = yield* Effect.flip(
        Listener.makeTcp({ host: "127.0.0.1", proxyProtocol: { trusted: ["127.0.0.1", "10.0.0.0/33"] } })
      )
      expect(error.message).toBe(
        "Open: proxyProtocol.trusted: \"10.0.0.0/33\" is not an address or a CIDR block"
      )
    }))
})

const tlsProxied = () =>
  Effect.gen(function*() {
    const pems = certificates()
    const listener = yield* Listener.makeTls({
      host: "127.0.0.1",
      key: pems.serverKey,
      cert: pems.serverCert,
      proxyProtocol: { trusted: ["127.0.0.1"], timeout: "300 millis" }
    })
    const server = yield* ChatServer.make(Who).pipe(Effect.provideService(Listener.Listener, listener))
    return { server, pems }
  })

/** Sends `line` once `secure` is connected; its answer's first line, then " from" our port, ends the exchange. */
const askOver = (
  secure: NodeTls.TLSSocket,
  line: string,
  localPort: number | undefined,
  resume: (effect: Effect.Effect<string, Error>) => void
) => {
  let from = localPort
  secure.once("secureConnect", () => {
    from ??= secure.localPort
    secure.write(`${line}\n`)
  })
  let got = ""
  secure.on("data", (data: Buffer) => {
    got += data.toString()
    if (got.endsWith("\n")) {
      secure.destroy()
      resume(Effect.succeed(`${got} from ${from}`))
    }
  })
  secure.on("error", (error) => resume(Effect.fail(error)))
}

/** A TLS client over a TCP socket that first sent `header` (in the same segment as the ClientHello or not). */
const tlsAsk = (port: number, ca: string, header: Uint8Array, line: string) =>
  Effect.callback<string, Error>((resume) => {
    const raw = Net.createConnection({ host: "127.0.0.1", port }, () => {
      raw.write(header)
      askOver(NodeTls.connect({ socket: raw, ca, servername: "localhost" }), line, raw.localPort, resume)
    })
    raw.on("error", (error) => resume(Effect.fail(error)))
    return Effect.sync(() => raw.destroy())
  })

describe("Listener.makeTls with proxyProtocol", () => {
  it.live("reads the header before the ClientHello; the handler sees the header's addresses over TLS", () =>
    Effect.gen(function*() {
      const { pems, server } = yield* tlsProxied()
      const port = portOf(server)
      for (const c of cases) {
        const answer = yield* tlsAsk(port, pems.ca, c.header, "hi")
        const [, localPort] = /from (\d+)$/.exec(answer)!
        const remote = c.remote ?? inet("127.0.0.1", Number(localPort))
        const local = c.local ?? inet("127.0.0.1", port)
        expect(answer, c.name).toBe(
          `${Chat.formatAddress(remote)} ${Chat.formatAddress(local)} hi tls\n from ${localPort}`
        )
      }
    }))

  it.live("a bad header is refused before any TLS, and the next connection is served", () =>
    Effect.gen(function*() {
      const { pems, server } = yield* tlsProxied()
      const port = portOf(server)
      const bad = yield* Effect.flip(tlsAsk(port, pems.ca, Buffer.from("PROXY TCP5 x\r\n"), "hi"))
      expect(bad.message).toMatch(/socket disconnected|ECONNRESET|socket hang up/)
      const answer = yield* tlsAsk(port, pems.ca, v1("TCP4 192.0.2.9 192.0.2.10 9 10"), "again")
      expect(answer).toMatch(/^192\.0\.2\.9:9 192\.0\.2\.10:10 again tls\n/)
    }))
})

// --- a real HAProxy ---

describe("behind HAProxy", () => {
  ;(haproxy.available ? it.live : it.live.skip)(
    `send-proxy and send-proxy-v2: the handler sees the client's own address and port${haproxy.skipReason}`,
    () =>
      Effect.gen(function*() {
        haproxy.require()
        const server = yield* proxiedServer({ trusted: ["127.0.0.1"] })
        const ours = portOf(server)
        const invalidBefore = (yield* errorsOf("ProxyHeaderInvalid")) + (yield* errorsOf("ProxyUntrusted"))
        const totalBefore = (yield* Metric.value(ChatMetrics.connectionsTotal)).count
        const resetBefore = yield* errorsOf("ReadFailed")
        const { child, ports: [v1Port, v2Port] } = yield* startHaproxy([
          `127.0.0.1:${ours} send-proxy`,
          // its health checks connect too, with a header of their own (v2: LOCAL)
          `127.0.0.1:${ours} send-proxy-v2 check inter 100ms`
        ])
        const clients: Array<string> = []
        for (const [frontend, version] of [[v1Port, "v1"], [v2Port, "v2"]] as const) {
          const peer = yield* rawConnect(frontend)
          clients.push(`127.0.0.1:${peer.socket.localPort} on 127.0.0.1:${frontend}`)
          yield* peer.write(`hello ${version}\n`)
          const expected = `127.0.0.1:${peer.socket.localPort} 127.0.0.1:${frontend} hello ${version}\n`
          yield* peer.receive(expected)
          expect(peer.text).toBe(expected)
        }
        const connections = yield* server.connections
        // the server's own view of them (beside a health check's, or the probe's, that may be open)
        expect(
          connections.map((chat) =>
            `${Chat.formatAddress(chat.remoteAddress)} on ${Chat.formatAddress(chat.localAddress)}`
          )
        ).toEqual(expect.arrayContaining(clients))
        // A few health checks later (a LOCAL header, then a close, often a reset): each was served, or reset
        // before it was (a routine ReadFailed), none a bad header.
        const checks = Effect.gen(function*() {
          const total = (yield* Metric.value(ChatMetrics.connectionsTotal)).count - totalBefore - 2
          return total + (yield* errorsOf("ReadFailed")) - resetBefore
        })
        yield* settle(Effect.map(checks, (n) => n >= 5), "5 seconds")
        expect(yield* checks).toBeGreaterThanOrEqual(5)
        // a check reset before its accept has no address, and is no untrusted source for that
        expect((yield* errorsOf("ProxyHeaderInvalid")) + (yield* errorsOf("ProxyUntrusted")) - invalidBefore).toBe(0)
        child.kill("SIGTERM")
        expect((yield* exitOf(child, "5 seconds")).signal ?? "exited").not.toBe("SIGKILL")
      }).pipe(Effect.scoped),
    20_000
  )
  ;(haproxy.available ? it.live : it.live.skip)(
    `TLS passed through with send-proxy-v2: the header, then the client's own handshake${haproxy.skipReason}`,
    () =>
      Effect.gen(function*() {
        haproxy.require()
        const { pems, server } = yield* tlsProxied()
        const { ports: [frontend] } = yield* startHaproxy([`127.0.0.1:${portOf(server)} send-proxy-v2`])
        const answer = yield* Effect.callback<string, Error>((resume) => {
          const secure = NodeTls.connect({ host: "127.0.0.1", port: frontend, ca: pems.ca, servername: "localhost" })
          askOver(secure, "hello", undefined, resume)
          return Effect.sync(() => secure.destroy())
        })
        const localPort = /from (\d+)$/.exec(answer)![1]
        expect(answer).toBe(`127.0.0.1:${localPort} 127.0.0.1:${frontend} hello tls\n from ${localPort}`)
      }).pipe(Effect.scoped),
    20_000
  )
})
