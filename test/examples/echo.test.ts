/**
 * examples/echo.ts, asyncore's echo server, end to end over TCP on 127.0.0.1: real `nc` (netcat-openbsd) and
 * raw `node:net` clients get back exactly the bytes they sent, chunk by chunk, with no terminator waited for.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Buffer } from "node:buffer"
import { Echo } from "../../examples/echo.ts"
import { nc } from "../tools.ts"
import { binary, cli, connect, listeningPort, serve, settleCount, spawn } from "./peers.ts"

const ncIt = nc.available ? it.live : it.live.skip

describe("echo with nc", () => {
  ncIt(
    `nc gets back every byte it sent, binary included, and exits 0 once the server closes${nc.skipReason}`,
    () =>
      serve(Echo, {}, (port) =>
        Effect.gen(function*() {
          nc.require()
          const payload = Buffer.concat([Buffer.from("hello\nworld\r\n"), binary(4096), Buffer.from("no newline")])
          // -N: a FIN after stdin's end; the server echoes what is left, closes, and nc exits
          const child = yield* spawn("nc", ["-N", "127.0.0.1", String(port)])
          yield* child.end(payload)
          expect(yield* child.exit()).toMatchObject({ code: 0, signal: null })
          expect(child.stdout.bytes.equals(payload)).toBe(true)
          expect(child.stdout.bytes.length).toBe(4096 + 23)
        }))
  )

  ncIt(
    `two nc sessions at once: each gets its own bytes back, a partial line at once${nc.skipReason}`,
    () =>
      serve(Echo, {}, (port, server) =>
        Effect.gen(function*() {
          nc.require()
          const alice = yield* spawn("nc", ["-N", "127.0.0.1", String(port)])
          const bob = yield* spawn("nc", ["-N", "127.0.0.1", String(port)])
          yield* alice.write("alice 1\n")
          yield* alice.stdout.contains("alice 1\n")
          // no newline: an echo server with no terminator answers what arrived, not waiting for a line end
          yield* bob.write("bob, no newline")
          yield* bob.stdout.contains("bob, no newline")
          yield* alice.write("alice 2")
          yield* alice.stdout.contains("alice 2")
          expect(yield* server.count).toBe(2)
          yield* alice.end()
          yield* bob.end(" and the rest\n")
          expect(yield* alice.exit()).toMatchObject({ code: 0, signal: null })
          expect(yield* bob.exit()).toMatchObject({ code: 0, signal: null })
          expect(alice.stdout.text).toBe("alice 1\nalice 2")
          expect(bob.stdout.text).toBe("bob, no newline and the rest\n")
        }))
  )
})

describe("echo with node:net clients", () => {
  it.live("every piece comes back before the next is sent, then the server's FIN follows the client's", () =>
    serve(Echo, {}, (port) =>
      Effect.gen(function*() {
        const peer = yield* connect(port)
        peer.socket.setNoDelay(true)
        const pieces = ["h", "ello", " wor", "ld\n", "\x00\xff\r", "\n\n"].map((s) => Buffer.from(s, "latin1"))
        let sent = 0
        for (const piece of pieces) {
          yield* peer.write(piece)
          sent += piece.length
          yield* peer.received.atLeast(sent)
          expect(peer.received.bytes.equals(Buffer.concat(pieces).subarray(0, sent))).toBe(true)
        }
        expect(peer.received.ended).toBe(false)
        yield* peer.end()
        yield* peer.received.endOf()
        expect(peer.received.bytes.toString("latin1")).toBe("hello world\n\x00\xff\r\n\n")
      })))

  it.live("4 MiB written at once come back whole and in order", () =>
    serve(Echo, {}, (port) =>
      Effect.gen(function*() {
        const payload = binary(4 * 1024 * 1024, 7)
        const peer = yield* connect(port)
        yield* peer.end(payload)
        yield* peer.received.endOf("10 seconds")
        expect(peer.received.bytes.length).toBe(payload.length)
        expect(peer.received.bytes.equals(payload)).toBe(true)
      })))

  it.live("twenty concurrent clients each get exactly their own bytes", () =>
    serve(Echo, {}, (port, server) =>
      Effect.gen(function*() {
        const peers = yield* Effect.forEach(
          Array.from({ length: 20 }, (_, i) => i),
          (i) => connect(port, `client ${i}`)
        )
        yield* Effect.forEach(peers, (peer, i) => peer.end(binary(10_000 + i, i)), { discard: true })
        yield* Effect.forEach(peers, (peer) => peer.received.endOf(), { concurrency: "unbounded", discard: true })
        peers.forEach((peer, i) => expect(peer.received.bytes.equals(binary(10_000 + i, i)), `client ${i}`).toBe(true))
        expect(yield* settleCount(server, 0)).toBe(0)
      })))
})

describe("echo from the command line", () => {
  it.live("npm start -- echo --port 0 listens on a free port and echoes", () =>
    Effect.gen(function*() {
      const child = yield* cli("echo", "--port", "0")
      const port = yield* listeningPort(child)
      yield* child.stdout.contains(`  try: nc 127.0.0.1 ${port}\n`)
      const peer = yield* connect(port)
      yield* peer.end("through the CLI\n")
      yield* peer.received.endOf()
      expect(peer.received.text).toBe("through the CLI\n")
      // Ctrl-C: a graceful shutdown, which the CLI ends with exit status 0
      child.process.kill("SIGINT")
      expect(yield* child.exit()).toMatchObject({ code: 0, signal: null })
    }))
})
