/**
 * examples/chatroom.ts with `--redis`, end to end: two CLI processes on their own ports over one real
 * redis-server, raw clients on each; a line crosses processes, renames are checked across them, `/who` lists all.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { tool } from "../tools.ts"
import { cli, connect, freePort, listeningPort, redisServerOn } from "./peers.ts"

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
})
