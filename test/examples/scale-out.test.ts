/**
 * Scale-out, end to end and on loopback only: a real redis-server, `chatroom --workers 2 --redis url
 * --proxy-protocol` (a supervisor and two worker processes on one port, one room over Redis), and a real HAProxy
 * in TCP mode in front of it with `send-proxy-v2`. 200 clients connect through HAProxy and are spread over both
 * workers (a guest's tag names its worker's pid); every numbered line reaches every other client exactly once and
 * in order per sender, never its sender. One worker is then killed with SIGKILL while lines are on their way: its
 * clients' connections end, the other worker's clients lose nothing, the supervisor starts a new worker, and a
 * client that HAProxy gives it is in the same room.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { alive } from "../helpers.ts"
import { haproxy, tool } from "../tools.ts"
import { exitOf, startHaproxy } from "../transport-helpers.ts"
import { connect, freePort, type Peer, redisServerOn, spawn, workersOnRedis } from "./peers.ts"

const redisServer = tool("redis-server")
const available = redisServer.available && haproxy.available
const skipReason = redisServer.skipReason || haproxy.skipReason

const CLIENTS = 200
/** Lines 0..BEFORE-1 are sent by everyone before the kill, BEFORE..TOTAL-1 by the survivors around it. */
const BEFORE = 3
const TOTAL = 7

interface Client {
  readonly peer: Peer
  readonly nick: string
  /** Its worker's pid in base 36. */
  readonly tag: string
}

/** `<nick> n<k>` lines received, by sender, in the order they arrived. */
const numbered = (client: Client): Map<string, Array<number>> => {
  const bySender = new Map<string, Array<number>>()
  for (const line of client.peer.received.lines) {
    const m = /^<(\S+)> n(\d+)$/.exec(line)
    if (m === null) continue
    const seen = bySender.get(m[1]) ?? []
    seen.push(Number(m[2]))
    bySender.set(m[1], seen)
  }
  return bySender
}

const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i)

/**
 * Waits until `client` has `expected.length` numbered lines from each other of `senders`, then asserts them: from
 * each, exactly `expected` (once each, in order), and none of its own.
 */
const delivered = (client: Client, senders: ReadonlyArray<Client>, expected: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const others = senders.filter((sender) => sender !== client)
    const fromOthers = () => {
      const bySender = numbered(client)
      return others.reduce((n, other) => n + (bySender.get(other.nick)?.length ?? 0), 0)
    }
    yield* client.peer.received.until(
      `${others.length * expected.length} numbered lines from ${others.length} others`,
      () => fromOthers() >= others.length * expected.length,
      "20 seconds"
    )
    const bySender = numbered(client)
    expect(bySender.has(client.nick), `${client.nick} got its own line`).toBe(false)
    for (const other of others) {
      expect({ from: other.nick, ks: bySender.get(other.nick) }).toEqual({ from: other.nick, ks: expected })
    }
  })

/** Connects one client through HAProxy and waits for its welcome. */
const join = (port: number, name: string) =>
  Effect.gen(function*() {
    const peer = yield* connect(port, name)
    yield* peer.received.contains("/quit leaves\n", "10 seconds")
    const nick = /you are (\S+);/.exec(peer.received.text)![1]
    return { peer, nick, tag: nick.split("-")[1] } satisfies Client
  })

const startedPids = (text: string) => [...text.matchAll(/worker \d+ started \(pid (\d+)\)/g)].map((m) => Number(m[1]))

describe("scale-out", () => {
  ;(available ? it.live : it.live.skip)(
    `200 clients through HAProxy (send-proxy-v2) on chatroom --workers 2 --redis: one room; a worker killed mid-run is restarted and the survivors lose nothing${skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        redisServer.require()
        haproxy.require()
        const began = performance.now()
        const redisPort = yield* freePort
        yield* redisServerOn(redisPort)
        const port = yield* freePort
        const supervisor = yield* spawn(process.execPath, [
          "--conditions=@effect-asynchat/source",
          "examples/cli.ts",
          "chatroom",
          "--port",
          String(port),
          "--workers",
          "2",
          "--redis",
          `redis://127.0.0.1:${redisPort}`,
          "--proxy-protocol"
        ], { timeout: "60 seconds" })
        yield* workersOnRedis(supervisor, 2)
        const pids = startedPids(supervisor.stdout.text)
        expect(pids).toHaveLength(2)
        const { child: proxy, ports: [frontend] } = yield* startHaproxy([`127.0.0.1:${port} send-proxy-v2`], {
          maxconn: 1000,
          timeout: "60s"
        })

        // 200 clients, each welcomed by one worker or the other (the kernel picks among the reusePort sockets)
        const clients = yield* Effect.forEach(range(0, CLIENTS), (i) => join(frontend, `client ${i}`), {
          concurrency: 16
        })
        expect(new Set(clients.map((c) => c.nick)).size).toBe(CLIENTS)
        expect(new Set(clients.map((c) => c.tag))).toEqual(new Set(pids.map((pid) => pid.toString(36))))
        // one room: /who on the first lists every client of both workers, once each worker's presence writes are in
        // Redis (asked again until then, up to 10 seconds)
        const who = (client: Client) =>
          Effect.gen(function*() {
            const before = client.peer.received.lines.filter((l) => l.startsWith("* here: ")).length
            yield* client.peer.write("/who\n")
            yield* client.peer.received.until(
              "a /who answer",
              (r) => r.lines.filter((l) => l.startsWith("* here: ")).length > before,
              "10 seconds"
            )
            return client.peer.received.lines.filter((l) => l.startsWith("* here: "))[before].slice(8).split(", ")
          })
        let here = yield* who(clients[0])
        let asked = 1
        for (; asked <= 100 && !clients.every((c) => here.includes(c.nick)); asked++) {
          yield* Effect.sleep("100 millis")
          here = yield* who(clients[0])
        }
        expect(here).toEqual(expect.arrayContaining(clients.map((c) => c.nick)))

        // every client's lines 0..BEFORE-1, all at once: each reaches every other client once, in order
        for (const client of clients) yield* client.peer.write(range(0, BEFORE).map((k) => `n${k}\n`).join(""))
        yield* Effect.forEach(clients, (client) => delivered(client, clients, range(0, BEFORE)), { discard: true })
        const phaseOne = performance.now()

        // a worker killed while the survivors' next lines are on their way
        const [victim, survivor] = pids
        const lost = clients.filter((c) => c.tag === victim.toString(36))
        const survivors = clients.filter((c) => c.tag === survivor.toString(36))
        expect(lost.length + survivors.length).toBe(CLIENTS)
        const mid = Math.floor((BEFORE + TOTAL) / 2)
        for (const client of survivors) yield* client.peer.write(range(BEFORE, mid).map((k) => `n${k}\n`).join(""))
        process.kill(victim, "SIGKILL")
        for (const client of survivors) yield* client.peer.write(range(mid, TOTAL).map((k) => `n${k}\n`).join(""))
        // its clients' connections end (HAProxy closes them once the worker's sockets are gone)
        yield* Effect.forEach(lost, (client) => client.peer.received.endOf("10 seconds"), { discard: true })
        // the survivors lost nothing: every line of every other survivor, once, in order, none ended
        yield* Effect.forEach(survivors, (client) =>
          delivered(client, survivors, range(0, TOTAL)).pipe(
            Effect.andThen(Effect.sync(() => expect(client.peer.received.ended).toBe(false)))
          ), { discard: true })

        // the supervisor restarts it: a new pid, listening and connected to Redis
        yield* supervisor.stdout.contains(`(pid ${victim}) was killed by SIGKILL: restarting it`, "10 seconds")
        yield* supervisor.stdout.until("a third worker", (r) => startedPids(r.text).length >= 3, "10 seconds")
        const replacement = startedPids(supervisor.stdout.text)[2]
        expect(pids).not.toContain(replacement)
        yield* supervisor.stdout.until(
          "the new worker listening and connected to Redis",
          (r) =>
            new RegExp(`\\(worker \\d+, pid ${replacement}\\)`).test(r.text) &&
            (r.text.match(/connected to Redis/g) ?? []).length >= 3,
          "20 seconds"
        )
        // new clients through HAProxy until one is the new worker's (the kernel picks; 32 all on the old one is
        // a 2^-32 chance); its line reaches every survivor
        const fresh: Array<Client> = []
        while (!fresh.some((c) => c.tag === replacement.toString(36)) && fresh.length < 32) {
          fresh.push(yield* join(frontend, `fresh ${fresh.length}`))
        }
        const newcomer = fresh.find((c) => c.tag === replacement.toString(36))
        expect(newcomer, `fresh clients' nicks: ${fresh.map((c) => c.nick)}`).toBeDefined()
        yield* newcomer!.peer.write("hello from the new worker\n")
        yield* Effect.forEach(
          survivors,
          (client) => client.peer.received.contains(`<${newcomer!.nick}> hello from the new worker\n`, "10 seconds"),
          { discard: true }
        )
        // and nothing more of the numbered lines arrived late (no duplicate after the counts were reached)
        for (const client of survivors) {
          for (const [from, ks] of numbered(client)) {
            const expected = lost.some((c) => c.nick === from) ? range(0, BEFORE) : range(0, TOTAL)
            expect({ from, ks }).toEqual({ from, ks: expected })
          }
        }

        // everything stops: the supervisor and its workers on SIGTERM (exit 0), HAProxy, redis-server with the scope
        supervisor.process.kill("SIGTERM")
        expect(yield* supervisor.exit("15 seconds")).toMatchObject({ code: 0, signal: null })
        expect([survivor, replacement].filter(alive)).toEqual([])
        proxy.kill("SIGTERM")
        expect((yield* exitOf(proxy, "5 seconds")).signal ?? "exited").not.toBe("SIGKILL")
        const elapsed = performance.now() - began
        console.log(
          `scale-out: ${lost.length}/${survivors.length} clients on the two workers; /who asked ${asked} times; ` +
            `first lines delivered in ${Math.round(phaseOne - began)} ms, all in ${Math.round(elapsed)} ms`
        )
      })),
    60_000
  )
})
