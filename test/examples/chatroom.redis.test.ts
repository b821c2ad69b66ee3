/**
 * examples/chatroom.ts with `--redis`, end to end: two CLI processes on their own ports over one real
 * redis-server, raw clients on each; a line crosses processes, renames are checked across them, `/who` lists all.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { tool } from "../tools.ts"
import { cli, connect, freePort, listeningPort, type Peer, redisServerOn, spawn, workersOnRedis } from "./peers.ts"

const redisServer = tool("redis-server")

const welcome = (nick: string) =>
  `* welcome, you are ${nick}; /nick <name> renames you, /who lists the room, /quit leaves\n`

/** The guest nick a client was welcomed with: guest<id>-<its process's tag>. */
const guestOf = (text: string) => /^\* welcome, you are (guest1-[a-z0-9]+);/.exec(text)?.[1] ?? "(no welcome)"

describe("chatroom --redis", () => {
  ;(redisServer.available ? it.live : it.live.skip)(
    `two chatroom processes, one room: a line crosses, /nick is unique across them, /who lists all${redisServer.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        redisServer.require()
        const redisPort = yield* freePort
        yield* redisServerOn(redisPort)
        const url = `redis://127.0.0.1:${redisPort}`
        const room = Effect.gen(function*() {
          const child = yield* cli("chatroom", "--port", "0", "--redis", url)
          const port = yield* listeningPort(child)
          yield* child.stdout.contains(`one room over Redis at ${url}`)
          yield* child.stdout.contains("connected to Redis", "10 seconds")
          return port
        })
        const [one, two] = yield* Effect.all([room, room], { concurrency: "unbounded" })

        const alice = yield* connect(one, "alice")
        yield* alice.received.contains("/quit leaves\n")
        const bob = yield* connect(two, "bob")
        yield* bob.received.contains("/quit leaves\n")
        const [guestA, guestB] = [guestOf(alice.received.text), guestOf(bob.received.text)]
        // guests on two processes are told apart by their process's tag
        expect(guestA).not.toBe(guestB)
        yield* alice.received.contains(`* ${guestB} joined\n`)
        // once bob has seen it, node two's Redis has alice's new nick too (written before the line is published)
        yield* alice.write("/nick alice\n")
        yield* bob.received.contains(`* ${guestA} is now alice\n`)
        yield* bob.write(`/nick alice\n/nick ${guestA}\n/nick bob\n`)
        yield* bob.received.contains(`* ${guestB} is now bob\n`)
        yield* alice.received.contains(`* ${guestB} is now bob\n`)

        yield* alice.write("hello from one\n")
        yield* bob.received.contains("<alice> hello from one\n")
        yield* bob.write("hi from two\n/who\n")
        yield* alice.received.contains("<bob> hi from two\n")
        yield* bob.received.contains("* here: bob, alice\n")
        yield* alice.write("/who\n")
        yield* alice.received.contains("* here: alice, bob\n")

        yield* bob.write("/quit\n")
        yield* alice.received.contains("* bob left\n")
        // alice's join was published as bob arrived: whether it crossed before him is a race, and either is right
        expect(bob.received.text.replace(`${welcome(guestB)}* ${guestA} joined\n`, welcome(guestB))).toBe(
          welcome(guestB) +
            `* ${guestA} is now alice\n* alice is taken\n* guest<number> nicks are kept for newcomers\n` +
            `* ${guestB} is now bob\n<alice> hello from one\n* here: bob, alice\n* bye\n`
        )
        expect(alice.received.text).toBe(
          welcome(guestA) + `* ${guestB} joined\n* ${guestA} is now alice\n* ${guestB} is now bob\n` +
            "<bob> hi from two\n* here: alice, bob\n* bob left\n"
        )
      })),
    30_000
  )
  ;(redisServer.available ? it.live : it.live.skip)(
    `--workers 2 --redis: the workers are one room, whichever worker the kernel gives a client${redisServer.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        redisServer.require()
        const redisPort = yield* freePort
        yield* redisServerOn(redisPort)
        const supervisor = yield* spawn(process.execPath, [
          "--conditions=@effect-asynchat/source",
          "examples/cli.ts",
          "chatroom",
          "--port",
          "0",
          "--workers",
          "2",
          "--redis",
          `redis://127.0.0.1:${redisPort}`
        ], { timeout: "60 seconds" })
        yield* workersOnRedis(supervisor, 2)
        const port = Number(/workers on 127\.0\.0\.1:(\d+)/.exec(supervisor.stdout.text)![1])
        // clients until both workers have some (the kernel picks; each tag is a worker's)
        const clients: Array<Peer> = []
        const nicks: Array<string> = []
        const tags = () => new Set(nicks.map((nick) => nick.split("-")[1]))
        while (clients.length < 4 || (tags().size < 2 && clients.length < 24)) {
          const client = yield* connect(port, `client ${clients.length}`)
          yield* client.received.contains("/quit leaves\n")
          clients.push(client)
          nicks.push(/you are (\S+);/.exec(client.received.text)![1])
        }
        expect(tags().size).toBe(2)
        expect(new Set(nicks).size).toBe(clients.length)
        // every later join reached the first client, from its worker or the other
        yield* clients[0].received.until(
          "every join",
          (r) => (r.text.match(/ joined\n/g) ?? []).length >= clients.length - 1
        )
        yield* clients[0].write("/who\nhello, all\n")
        yield* clients[0].received.contains("* here: ")
        const here = /\* here: (.*)\n/.exec(clients[0].received.text)![1].split(", ")
        expect(here.toSorted()).toEqual(nicks.toSorted())
        yield* Effect.forEach(clients.slice(1), (client) => client.received.contains(`<${nicks[0]}> hello, all\n`), {
          discard: true
        })
      })),
    60_000
  )
})
