/**
 * ChannelMap over a real redis-server (started on a free port for each test, without persistence): two nodes,
 * each a ChatServer with its own map, in this process; raw TCP clients on both.
 */
import { describe, expect, it } from "@effect/vitest"
import { type Duration, Effect, Layer, Schedule, Stream } from "effect"
import * as ChildProcess from "node:child_process"
import { ChannelMap, Chat, ChatServer, Listener, Protocol, Terminator } from "../src/index.ts"
import { connect, freePort, redisServerOn as startRedis } from "./examples/peers.ts"
import { captureLogs } from "./helpers.ts"
import { tool } from "./tools.ts"

const redisServer = tool("redis-server")
const redisCli = tool("redis-cli")
const redisIt = redisServer.available ? it.live : it.live.skip
const redisCliIt = redisServer.available && redisCli.available ? it.live : it.live.skip

/** One redis-cli command against 127.0.0.1:`port`: its reply, trimmed. */
const cli = (port: number, ...args: ReadonlyArray<string>) =>
  Effect.sync(() =>
    ChildProcess.execFileSync("redis-cli", ["-p", String(port), ...args], { encoding: "utf8", timeout: 5000 }).trim()
  )

const decoder = new TextDecoder()

/**
 * The test's room: the first line is the sender's name (joined to the map); then `to <node> <id> <text>` sends to
 * one connection, `who` lists everyone, and any other line goes to everyone else as `<name> line`.
 */
const Room = Protocol.make(Terminator.lf, (lines) =>
  Effect.scoped(Effect.gen(function*() {
    const chat = yield* Chat.Chat
    const map = yield* ChannelMap.ChannelMap
    let name: string | undefined
    yield* Stream.runForEach(lines, (frame) => {
      const line = decoder.decode(frame.bytes)
      if (name === undefined) {
        name = line
        return map.join(chat.id, line)
      }
      const to = /^to (\S+) (\d+) (.*)$/.exec(line)
      if (to !== null) return map.sendTo(to[1], Number(to[2]), `${to[3]}\n`)
      if (line === "who") {
        return map.members.pipe(
          Effect.flatMap((members) => chat.push(`${members.map((m) => `${m.node}/${m.id}/${m.meta}`).join(" ")}\n`)),
          Effect.catchTag("ChannelMapError", (error) => chat.push(`! ${error.reason}\n`))
        )
      }
      return map.broadcast(`<${name}> ${line}\n`, { except: chat.id })
    })
  })))

/** A node: a map `nodeId` on `url` and a server on 127.0.0.1 attached to it, for the scope. */
const node = (url: string, nodeId: string, presenceTtl: Duration.Input = "3 seconds", maxPending?: number) =>
  Effect.gen(function*() {
    const map = yield* ChannelMap.make({
      url,
      nodeId,
      reconnect: Schedule.spaced("100 millis"),
      presenceTtl,
      maxPending,
      connectTimeout: "1 second"
    })
    const listener = yield* Layer.build(Listener.layerTcp({ host: "127.0.0.1", port: 0 }))
    const server = yield* ChatServer.make(Room).pipe(
      Effect.provideService(ChannelMap.ChannelMap, map),
      Effect.provideContext(listener)
    )
    yield* map.attach(server)
    const port = server.address._tag === "Inet" ? server.address.port : 0
    return { map, server, port }
  })

/** Polls `check` every 20 ms until it holds (up to 5 seconds); dies with `what` otherwise. */
const eventually = <E>(what: string, check: Effect.Effect<boolean, E>) =>
  Effect.gen(function*() {
    for (let i = 0; i < 250; i++) {
      if (yield* check) return
      yield* Effect.sleep("20 millis")
    }
    return yield* Effect.die(new Error(`timed out waiting for ${what}`))
  })

const connected = (map: ChannelMap.ChannelMapShape) => Effect.map(map.stats, (s) => s.connected)

/** The lines of `text` from `who`, in order. */
const from = (text: string, who: string) =>
  text.split("\n").filter((line) => line.startsWith(`<${who}>`)).map((line) => `${line}\n`).join("")

const names = (members: ReadonlyArray<ChannelMap.Member>) => members.map((m) => `${m.node}/${m.id}/${m.meta}`)

/** A redis-server of its own and two nodes on it, A (its commands waiting at most `maxPending`) and B, connected. */
const twoNodes = (maxPending?: number) =>
  Effect.gen(function*() {
    const port = yield* freePort
    const redis = yield* startRedis(port)
    const url = `redis://127.0.0.1:${port}`
    const a = yield* node(url, "A", "3 seconds", maxPending)
    const b = yield* node(url, "B")
    yield* eventually(
      "both maps connected",
      Effect.map(Effect.all([connected(a.map), connected(b.map)]), (c) => c.every(Boolean))
    )
    return { port, redis, url, a, b }
  })

/** ann and amy on node A, bob on node B, all three in the presence. */
const threeChatters = (
  a: { readonly port: number; readonly map: ChannelMap.ChannelMapShape },
  b: { readonly port: number }
) =>
  Effect.gen(function*() {
    const a1 = yield* connect(a.port, "a1")
    yield* a1.write("ann\n")
    const a2 = yield* connect(a.port, "a2")
    yield* a2.write("amy\n")
    const b1 = yield* connect(b.port, "b1")
    yield* b1.write("bob\n")
    yield* eventually("3 members", Effect.map(a.map.members, (m) => m.length === 3))
    return { a1, a2, b1 }
  })

describe("ChannelMap over redis-server", () => {
  redisIt(
    `two nodes: broadcast exactly once and in order, presence, send to a connection${redisServer.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        redisServer.require()
        const { a, b } = yield* twoNodes()

        const { a1, a2, b1 } = yield* threeChatters(a, b)
        expect(names(yield* a.map.members)).toEqual(["A/1/ann", "A/2/amy", "B/1/bob"])
        expect(names(yield* b.map.members)).toEqual(["B/1/bob", "A/1/ann", "A/2/amy"])

        // two senders at once, on two nodes: each line once at every other connection, each sender's in order
        const N = 200
        const annLines = Array.from({ length: N }, (_, i) => `<ann> a${i}\n`).join("")
        const bobLines = Array.from({ length: N }, (_, i) => `<bob> b${i}\n`).join("")
        yield* a1.write(Array.from({ length: N }, (_, i) => `a${i}\n`).join(""))
        yield* b1.write(Array.from({ length: N }, (_, i) => `b${i}\n`).join(""))
        yield* a2.received.atLeast(annLines.length + bobLines.length)
        yield* a1.received.atLeast(bobLines.length)
        yield* b1.received.atLeast(annLines.length)
        yield* Effect.sleep("200 millis")
        expect(from(a2.received.text, "ann")).toBe(annLines)
        expect(from(a2.received.text, "bob")).toBe(bobLines)
        expect(a2.received.text.length).toBe(annLines.length + bobLines.length)
        expect(a1.received.text).toBe(bobLines)
        expect(b1.received.text).toBe(annLines)

        // one connection on the other node, and on this one
        yield* a1.write("to B 1 psst bob\nto A 2 psst amy\n")
        yield* b1.received.contains("psst bob\n")
        yield* a2.received.contains("psst amy\n")
        expect(a1.received.text).toBe(bobLines)

        // a closed connection leaves the presence of every node
        a2.socket.destroy()
        yield* eventually("amy gone", Effect.map(b.map.members, (m) => m.length === 2))
        expect(names(yield* b.map.members)).toEqual(["B/1/bob", "A/1/ann"])
        yield* b1.write("who\n")
        yield* b1.received.contains("B/1/bob A/1/ann\n")
        expect((yield* a.map.stats).dropped).toBe(0)
      })),
    30_000
  )

  redisIt(
    `redis-server killed and restarted: local delivery goes on, one logged loss, cross-node again${redisServer.skipReason}`,
    () => {
      const logs = captureLogs()
      return Effect.scoped(Effect.gen(function*() {
        redisServer.require()
        const { a, b, port, redis } = yield* twoNodes()
        const { a1, a2, b1 } = yield* threeChatters(a, b)
        yield* a1.write("before\n")
        yield* b1.received.contains("<ann> before\n")

        redis.process.kill("SIGKILL")
        yield* redis.exit()
        yield* eventually(
          "both maps disconnected",
          Effect.map(Effect.all([connected(a.map), connected(b.map)]), (c) => !c.some(Boolean))
        )
        yield* a1.write("during\n")
        yield* a2.received.contains("<ann> during\n")
        expect((yield* Effect.flip(a.map.members)).reason).toBe("Disconnected")
        // some reconnect attempts fail meanwhile; the loss is logged once per node
        yield* Effect.sleep("500 millis")
        const losses = logs.lines.filter((line) => line.message.includes("is unreachable"))
        expect(losses.map((line) => line.annotations.channelMap).toSorted(), logs.messages()).toEqual(["A", "B"])
        expect(losses[0].level).toBe("Warn")
        // the typed error, with node-redis's reason in it
        expect(losses[0].message).toContain("ChannelMapError")
        expect(losses[0].message).toContain("ConnectionLost")
        expect((yield* a.map.stats).dropped).toBeGreaterThanOrEqual(1)

        yield* startRedis(port)
        yield* eventually(
          "both maps reconnected",
          Effect.map(Effect.all([a.map.stats, b.map.stats]), (s) => s.every((x) => x.connected && x.connects === 2))
        )
        // presence is written again after the restart emptied Redis
        yield* eventually("3 members again", Effect.map(b.map.members, (m) => m.length === 3))
        yield* a1.write("after\n")
        yield* b1.received.contains("<ann> after\n")
        expect(b1.received.text).toBe("<ann> before\n<ann> after\n")
        expect(a2.received.text).toBe("<ann> before\n<ann> during\n<ann> after\n")
      })).pipe(Effect.provide(logs.layer))
    },
    30_000
  )

  redisCliIt(
    `a Redis that refuses writes (out of memory) keeps the map connected: refusals counted and logged, lines cross${redisServer.skipReason}${redisCli.skipReason}`,
    () => {
      const logs = captureLogs()
      return Effect.scoped(
        Effect.gen(function*() {
          redisServer.require()
          redisCli.require()
          const { a, b, port } = yield* twoNodes()
          const connects = (yield* a.map.stats).connects
          // every write refused from now on (HSET, SADD: OOM); PUBLISH still goes
          yield* cli(port, "CONFIG", "SET", "maxmemory-policy", "noeviction")
          yield* cli(port, "CONFIG", "SET", "maxmemory", "1")
          const a1 = yield* connect(a.port, "a1")
          const b1 = yield* connect(b.port, "b1")
          yield* a1.write("ann\n")
          yield* b1.write("bob\n")
          yield* a1.write("hello\n")
          yield* b1.received.contains("<ann> hello\n")
          yield* Effect.sleep("300 millis")
          const stats = yield* a.map.stats
          expect({ connected: stats.connected, connects: stats.connects }).toEqual({ connected: true, connects })
          expect(logs.find("Redis refused HSET"), logs.messages()).toBeDefined()
          expect(logs.lines.filter((line) => line.message.includes("unreachable")), logs.messages()).toEqual([])
        })
      ).pipe(Effect.provide(logs.layer))
    },
    30_000
  )

  redisCliIt(
    `presence expires without heartbeats (a crashed node's entries go) and lives on with them${redisServer.skipReason}${redisCli.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        redisServer.require()
        redisCli.require()
        const port = yield* freePort
        yield* startRedis(port)
        const a = yield* node(`redis://127.0.0.1:${port}`, "A", "600 millis")
        yield* eventually("connected", connected(a.map))
        const a1 = yield* connect(a.port, "a1")
        yield* a1.write("ann\n")
        // a node that crashed: its entries as a node writes them, and no heartbeat after
        yield* cli(port, "HSET", "asynchat:presence:ghost", "1", "casper")
        yield* cli(port, "PEXPIRE", "asynchat:presence:ghost", "600")
        yield* cli(port, "SADD", "asynchat:nodes", "ghost")
        yield* eventually("ann and the ghost", Effect.map(a.map.members, (m) => m.length === 2))
        expect(names(yield* a.map.members)).toEqual(["A/1/ann", "ghost/1/casper"])
        yield* Effect.sleep("1500 millis")
        // A's own entry outlived its TTL twice over, by heartbeats; the ghost's expired, and its id is forgotten
        expect(names(yield* a.map.members)).toEqual(["A/1/ann"])
        expect(yield* cli(port, "HGETALL", "asynchat:presence:A")).toBe("1\nann")
        const ttl = Number(yield* cli(port, "PTTL", "asynchat:presence:A"))
        expect(ttl).toBeGreaterThan(0)
        expect(ttl).toBeLessThanOrEqual(600)
        expect(yield* cli(port, "SMEMBERS", "asynchat:nodes")).toBe("A")
      })),
    30_000
  )

  redisIt(
    `a silent redis-server (SIGSTOP: no reset, no error) is lost by the heartbeat, and found again${redisServer.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        redisServer.require()
        const { a, b, redis } = yield* twoNodes(4)
        const { a1, a2, b1 } = yield* threeChatters(a, b)

        redis.process.kill("SIGSTOP")
        // before the loss is known: one line in flight, 4 (maxPending) waiting, the rest dropped, not queued
        const lines = Array.from({ length: 50 }, (_, i) => `<ann> stuck${i}\n`).join("")
        yield* a1.write(Array.from({ length: 50 }, (_, i) => `stuck${i}\n`).join(""))
        yield* a2.received.contains(lines)
        const before = yield* a.map.stats
        expect(before.connected).toBe(true)
        expect(before.dropped).toBeGreaterThanOrEqual(45)
        // a heartbeat (every second here) unanswered within connectTimeout (1 second) is a loss
        yield* eventually(
          "both maps disconnected",
          Effect.map(Effect.all([connected(a.map), connected(b.map)]), (c) => !c.some(Boolean))
        )
        // the 4 waiting are dropped with the connection: all but the one in flight, if any, are counted
        const atLoss = (yield* a.map.stats).dropped
        expect(atLoss).toBeGreaterThanOrEqual(49)
        expect(atLoss).toBeLessThanOrEqual(50)
        yield* a1.write("meanwhile\n")
        yield* a2.received.contains("<ann> meanwhile\n")
        expect((yield* a.map.stats).dropped).toBe(atLoss + 1)
        redis.process.kill("SIGCONT")
        yield* eventually(
          "both maps reconnected",
          Effect.map(Effect.all([a.map.stats, b.map.stats]), (s) => s.every((x) => x.connected && x.connects >= 2))
        )
        yield* a1.write("again\n")
        yield* b1.received.contains("<ann> again\n")
        expect(b1.received.text).not.toContain("meanwhile")
        // the line in flight at the loss may have reached Redis before it stopped; none of the dropped ones did
        expect(b1.received.text.replace("<ann> stuck0\n", "")).toBe("<ann> again\n")
      })),
    30_000
  )
})
