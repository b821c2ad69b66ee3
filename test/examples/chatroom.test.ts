/**
 * examples/chatroom.ts end to end over TCP on 127.0.0.1: several real `nc` sessions and raw `node:net` clients
 * in one room. Each step waits until every participant has what it should, so each transcript is exact.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { Chatroom, MAX_LINE, serverOptions } from "../../examples/chatroom.ts"
import { nc } from "../tools.ts"
import { cli, connect, listeningPort, type Peer, type Received, serve, settleCount, spawn } from "./peers.ts"

const ncIt = nc.available ? it.live : it.live.skip

const welcome = (nick: string) =>
  `* welcome, you are ${nick}; /nick <name> renames you, /who lists the room, /quit leaves\n`

/** Waits until each of `who` has received `line` (a whole line). */
const allGet = (line: string, ...who: ReadonlyArray<Received>) =>
  Effect.forEach(who, (received) => received.contains(`${line}\n`), { concurrency: "unbounded", discard: true })

describe("chatroom with nc and node:net clients", () => {
  ncIt(
    `three nc sessions and a raw client: joins, lines to the others, /nick, /quit, hang-ups${nc.skipReason}`,
    () =>
      serve(Chatroom(), serverOptions, (port, server) =>
        Effect.gen(function*() {
          nc.require()
          // -N: ending nc's stdin hangs up (a FIN), as closing a terminal would
          const join = (nick: string) =>
            Effect.gen(function*() {
              const child = yield* spawn("nc", ["-N", "127.0.0.1", String(port)])
              yield* child.stdout.contains(welcome(nick))
              return child
            })
          const alice = yield* join("guest1")
          const bob = yield* join("guest2")
          yield* allGet("* guest2 joined", alice.stdout)
          const carol = yield* join("guest3")
          yield* allGet("* guest3 joined", alice.stdout, bob.stdout)
          const dave = yield* connect(port, "dave")
          yield* dave.received.contains(welcome("guest4"))
          yield* allGet("* guest4 joined", alice.stdout, bob.stdout, carol.stdout)

          yield* alice.write("/nick alice\n")
          yield* allGet("* guest1 is now alice", alice.stdout, bob.stdout, carol.stdout, dave.received)
          yield* bob.write("/nick bob\n")
          yield* allGet("* guest2 is now bob", alice.stdout, bob.stdout, carol.stdout, dave.received)
          yield* alice.write("hello, room\n")
          yield* allGet("<alice> hello, room", bob.stdout, carol.stdout, dave.received)
          yield* dave.write("/nick dave\r\nhi alice\r\n")
          yield* allGet("<dave> hi alice", alice.stdout, bob.stdout, carol.stdout)
          yield* carol.write("/quit\n")
          yield* allGet("* bye", carol.stdout)
          yield* allGet("* guest3 left", alice.stdout, bob.stdout, dave.received)
          expect(yield* settleCount(server, 3)).toBe(3)
          yield* carol.end()
          expect(yield* carol.exit()).toMatchObject({ code: 0, signal: null })
          // bob hangs up without a word
          yield* bob.end()
          expect(yield* bob.exit()).toMatchObject({ code: 0, signal: null })
          yield* allGet("* bob left", alice.stdout, dave.received)
          expect(yield* settleCount(server, 2)).toBe(2)

          expect(alice.stdout.text).toBe(
            welcome("guest1") +
              "* guest2 joined\n* guest3 joined\n* guest4 joined\n* guest1 is now alice\n* guest2 is now bob\n" +
              "* guest4 is now dave\n<dave> hi alice\n* guest3 left\n* bob left\n"
          )
          expect(bob.stdout.text).toBe(
            welcome("guest2") +
              "* guest3 joined\n* guest4 joined\n* guest1 is now alice\n* guest2 is now bob\n<alice> hello, room\n" +
              "* guest4 is now dave\n<dave> hi alice\n* guest3 left\n"
          )
          expect(carol.stdout.text).toBe(
            welcome("guest3") +
              "* guest4 joined\n* guest1 is now alice\n* guest2 is now bob\n<alice> hello, room\n" +
              "* guest4 is now dave\n<dave> hi alice\n* bye\n"
          )
          expect(dave.received.text).toBe(
            welcome("guest4") +
              "* guest1 is now alice\n* guest2 is now bob\n<alice> hello, room\n* guest4 is now dave\n* guest3 left\n" +
              "* bob left\n"
          )
        }))
  )

  it.live("/who lists the room; a bad or taken nick and an unknown command are answered to the sender only", () =>
    serve(Chatroom(), serverOptions, (port) =>
      Effect.gen(function*() {
        const ann = yield* connect(port, "ann")
        yield* ann.received.contains(welcome("guest1"))
        const ben = yield* connect(port, "ben")
        yield* ben.received.contains(welcome("guest2"))
        yield* ann.write("/nick ann\n")
        yield* allGet("* guest1 is now ann", ann.received, ben.received)
        yield* ben.write("/nick ann\n/nick not a nick\n/nick guest2\n/nick guest9\n/shout hey\n/who\n")
        yield* ben.received.contains("* here: ann, guest2\n")
        expect(ben.received.text.slice(welcome("guest2").length)).toBe(
          "* guest1 is now ann\n* ann is taken\n* a nick is 1 to 20 letters, digits, _ or -\n" +
            "* you are already guest2\n* guest<number> nicks are kept for newcomers\n* unknown command /shout; try /nick <name>, /who, /quit\n* here: ann, guest2\n"
        )
        // blank lines are not broadcast; a line is
        yield* ben.write("\n   \nok\n")
        yield* allGet("<guest2> ok", ann.received)
        expect(ann.received.text).toBe(welcome("guest1") + "* guest2 joined\n* guest1 is now ann\n<guest2> ok\n")
      })))

  it.live(`a line over ${MAX_LINE} bytes: its sender is told and let go, the room hears it left`, () =>
    serve(Chatroom(), serverOptions, (port, server) =>
      Effect.gen(function*() {
        const quiet = yield* connect(port, "quiet")
        yield* quiet.received.contains(welcome("guest1"))
        const loud = yield* connect(port, "loud")
        yield* loud.received.contains(welcome("guest2"))
        yield* loud.write(`${"a".repeat(MAX_LINE + 1)}\n`)
        yield* loud.received.endOf()
        expect(loud.received.text).toBe(welcome("guest2") + `* lines are at most ${MAX_LINE} bytes; bye\n`)
        yield* allGet("* guest2 left", quiet.received)
        expect(yield* settleCount(server, 1)).toBe(1)
        expect(quiet.received.text).toBe(welcome("guest1") + "* guest2 joined\n* guest2 left\n")
      })))

  it.live("five clients saying 100 lines each at once: everyone hears all the others', in each sender's order", () =>
    serve(Chatroom(), serverOptions, (port) =>
      Effect.gen(function*() {
        const n = 5
        const lines = 100
        const peers: Array<Peer> = []
        for (let i = 1; i <= n; i++) {
          const peer = yield* connect(port, `client ${i}`)
          yield* peer.received.contains(welcome(`guest${i}`))
          peers.push(peer)
        }
        // the last joined is announced to all the others before anyone speaks
        yield* allGet(`* guest${n} joined`, ...peers.slice(0, -1).map((p) => p.received))
        yield* Effect.forEach(peers, (peer, i) =>
          peer.write(Array.from({ length: lines }, (_, k) => `line ${k} from ${i + 1}\n`).join("")), { discard: true })
        yield* Effect.forEach(peers, (peer) =>
          peer.received.until(
            `${(n - 1) * lines} lines from the others`,
            (r) =>
              r.lines.filter((l) =>
                l.startsWith("<")
              ).length >= (n - 1) * lines
          ), { concurrency: "unbounded", discard: true })
        peers.forEach((peer, i) => {
          const said = peer.received.lines.filter((l) => l.startsWith("<"))
          for (let from = 1; from <= n; from++) {
            const heard = said.filter((l) => l.startsWith(`<guest${from}> `))
            const expected = from === i + 1
              ? []
              : Array.from({ length: lines }, (_, k) => `<guest${from}> line ${k} from ${from}`)
            expect(heard, `client ${i + 1} hearing guest${from}`).toEqual(expected)
          }
        })
      })))
})

describe("chatroom from the command line", () => {
  it.live("npm start -- chatroom --port 0: two clients talk through it; Ctrl-C tells them and exits", () =>
    Effect.gen(function*() {
      const child = yield* cli("chatroom", "--port", "0")
      const port = yield* listeningPort(child)
      const one = yield* connect(port, "one")
      yield* one.received.contains(welcome("guest1"))
      const two = yield* connect(port, "two")
      yield* two.received.contains(welcome("guest2"))
      yield* two.write("hi one\n")
      yield* one.received.contains("<guest2> hi one\n")
      // Ctrl-C: both are told and let go at once, not after the 5 seconds a graceful shutdown would wait
      child.process.kill("SIGINT")
      yield* Effect.all([one.received.endOf("2 seconds"), two.received.endOf("2 seconds")], { concurrency: 2 })
      expect(yield* child.exit("2 seconds")).toMatchObject({ code: 0, signal: null })
      expect(one.received.text).toBe(
        welcome("guest1") + "* guest2 joined\n<guest2> hi one\n* the server is shutting down\n"
      )
      expect(two.received.text).toBe(welcome("guest2") + "* the server is shutting down\n")
    }))
})
