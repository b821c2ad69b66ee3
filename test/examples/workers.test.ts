/**
 * `--workers n` end to end (src/Workers.ts under the examples' CLI): `http11 --workers 2` is a supervisor and two
 * worker processes on one port, each holding its own listening socket (`reusePort`); curl is answered, and the
 * connections of raw keep-alive clients are held by both workers, which /proc tells (the accepted socket's inode,
 * found by the client's port, among a worker's open files), without the example saying anything of it. A worker
 * killed with SIGKILL is replaced by a new pid that serves, while the other's clients are still answered; SIGTERM
 * to the supervisor alone stops every worker, and it exits 0, as does Ctrl-C, which reaches the workers too
 * (the terminal signals the whole group; none is taken for a crash); a supervisor killed outright takes its
 * workers with it (`followSupervisor`).
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import * as Fs from "node:fs"
import { alive } from "../helpers.ts"
import { curl } from "../tools.ts"
import { runCurl, startJob } from "./http-helpers.ts"
import { type Child, connect, type Peer, spawn } from "./peers.ts"

const get = "GET / HTTP/1.1\r\nHost: test\r\n\r\n"

/** The examples' CLI, bounded to a minute (a supervisor and its workers on a loaded machine). */
const supervisor = (...args: ReadonlyArray<string>) =>
  spawn(process.execPath, ["--conditions=@effect-asynchat/source", "examples/cli.ts", ...args], {
    timeout: "60 seconds"
  })

/** Waits for `n` workers listening, and gives the port and their pids from the log. */
const started = (child: Child, n: number) =>
  Effect.gen(function*() {
    yield* child.stdout.until(
      `${n} workers listening`,
      (r) => (r.text.match(/listening on 127\.0\.0\.1:\d+ \(worker \d+, pid \d+\)/g) ?? []).length >= n,
      "20 seconds"
    )
    const port = Number(/workers on 127\.0\.0\.1:(\d+)/.exec(child.stdout.text)![1])
    const pids = [...child.stdout.text.matchAll(/worker (\d+) started \(pid (\d+)\)/g)].map((m) => Number(m[2]))
    return { port, pids }
  })

/** The children of `pid`, from /proc. */
const childrenOf = (pid: number): Array<number> =>
  Fs.readFileSync(`/proc/${pid}/task/${pid}/children`, "utf8").trim().split(/\s+/).filter(Boolean).map(Number)

/** The socket inodes `pid` holds open. */
const socketsOf = (pid: number): Set<string> => {
  const inodes = new Set<string>()
  for (const fd of Fs.readdirSync(`/proc/${pid}/fd`)) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(Fs.readlinkSync(`/proc/${pid}/fd/${fd}`))
      if (m !== null) inodes.add(m[1])
    } catch {
      // closed meanwhile
    }
  }
  return inodes
}

const hexPort = (port: number) => port.toString(16).toUpperCase().padStart(4, "0")

/**
 * Which of `pids` holds the server's end of the connection from our `clientPort` to `serverPort`: the line of
 * /proc/net/tcp with those ends gives the socket's inode, found among that pid's open files.
 */
const ownerOf = (serverPort: number, clientPort: number, pids: ReadonlyArray<number>): number | undefined => {
  const line = Fs.readFileSync("/proc/net/tcp", "utf8").split("\n").map((l) => l.trim().split(/\s+/)).find((f) =>
    f[1] === `0100007F:${hexPort(serverPort)}` && f[2] === `0100007F:${hexPort(clientPort)}`
  )
  if (line === undefined) return undefined
  return pids.find((pid) => socketsOf(pid).has(line[9]))
}

/** One GET on a kept-alive connection, answered. */
const ask = (peer: Peer) =>
  Effect.gen(function*() {
    const before = (peer.received.text.match(/HTTP\/1\.1 200 OK/g) ?? []).length
    yield* peer.write(get)
    yield* peer.received.until(
      "an answer",
      (r) => (r.text.match(/HTTP\/1\.1 200 OK/g) ?? []).length > before && r.text.endsWith("hello world")
    )
  })

/** Which worker holds each of `peers`' connections. */
const owners = (port: number, peers: ReadonlyArray<Peer>, pids: ReadonlyArray<number>) =>
  peers.map((peer) => ownerOf(port, peer.socket.localPort!, pids))

const curlTest = curl.available ? it.live : it.live.skip

describe("--workers", () => {
  curlTest(
    `http11 --workers 2: curl is answered, both workers serve connections, SIGTERM to the supervisor stops all with exit 0${curl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        curl.require()
        // 0: each worker its own free port, which it prints (a port given is n + i for worker i)
        const child = yield* supervisor("http11", "--port", "0", "--workers", "2", "--metrics-port", "0")
        const { port, pids } = yield* started(child, 2)
        expect(pids).toHaveLength(2)
        expect(childrenOf(child.process.pid!).toSorted()).toEqual([...pids].toSorted())
        const answer = yield* runCurl("-i", `http://127.0.0.1:${port}/`, `http://127.0.0.1:${port}/`)
        expect(answer.code).toBe(0)
        expect(answer.stdout.toString().match(/HTTP\/1\.1 200 OK/g)).toHaveLength(2)
        // with SO_REUSEPORT the kernel spreads connections by their ports: 24 all on one worker is a 2^-23 chance
        const peers = yield* Effect.forEach(Array.from({ length: 24 }, (_, i) => i), (i) => connect(port, `peer ${i}`))
        yield* Effect.forEach(peers, ask, { concurrency: "unbounded", discard: true })
        const held = owners(port, peers, pids)
        expect(held.every((pid) => pid !== undefined), `owners ${held}`).toBe(true)
        expect(new Set(held)).toEqual(new Set(pids))
        // each worker its own metrics; the supervisor none (both have served)
        yield* child.stdout.until("two metrics lines", (r) => (r.text.match(/metrics on http:\S+/g) ?? []).length >= 2)
        const urls = [...child.stdout.text.matchAll(/metrics on (http:\S+)/g)].map((m) => m[1])
        expect(new Set(urls).size).toBe(2)
        for (const url of urls) {
          const scrape = yield* runCurl("-f", url)
          expect({ url, code: scrape.code }).toEqual({ url, code: 0 })
          expect(scrape.stdout.toString()).toContain("# TYPE")
        }
        // the supervisor alone is signalled: it stops its workers (their graceful shutdown), then exits 0
        const began = performance.now()
        child.process.kill("SIGTERM")
        const exit = yield* child.exit("10 seconds")
        expect(exit).toMatchObject({ code: 0, signal: null })
        expect(performance.now() - began).toBeLessThan(5000)
        expect(pids.filter(alive)).toEqual([])
        for (const pid of pids) {
          expect(child.stdout.text).toMatch(new RegExp(`pid ${pid}\\) stopped: exited with code 0`))
        }
        for (const peer of peers) yield* peer.received.endOf("2 seconds")
      })),
    60_000
  )

  it.live(
    "a worker killed with SIGKILL is restarted with a new pid that serves; the other serves on",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const child = yield* supervisor("http11", "--port", "0", "--workers", "2")
        const { port, pids } = yield* started(child, 2)
        const peers = yield* Effect.forEach(Array.from({ length: 16 }, (_, i) => i), (i) => connect(port, `peer ${i}`))
        yield* Effect.forEach(peers, ask, { concurrency: "unbounded", discard: true })
        const held = owners(port, peers, pids)
        const [victim, survivor] = pids
        const survivors = peers.filter((_, i) => held[i] === survivor)
        process.kill(victim, "SIGKILL")
        yield* child.stdout.contains(`(pid ${victim}) was killed by SIGKILL: restarting it`)
        yield* child.stdout.until(
          "the new worker",
          (r) => [...r.text.matchAll(/worker \d+ started \(pid (\d+)\)/g)].length >= 3,
          "10 seconds"
        )
        const replacement = Number([...child.stdout.text.matchAll(/worker \d+ started \(pid (\d+)\)/g)][2][1])
        expect(pids).not.toContain(replacement)
        yield* child.stdout.contains(`(worker 0, pid ${replacement})`, "10 seconds")
        expect(childrenOf(child.process.pid!).toSorted()).toEqual([survivor, replacement].toSorted())
        // the survivor's open connections were not disturbed
        for (const peer of survivors) yield* ask(peer)
        // new connections reach the new worker too
        const fresh = yield* Effect.forEach(Array.from({ length: 24 }, (_, i) => i), (i) => connect(port, `fresh ${i}`))
        yield* Effect.forEach(fresh, ask, { concurrency: "unbounded", discard: true })
        expect(new Set(owners(port, fresh, [survivor, replacement]))).toEqual(new Set([survivor, replacement]))
        child.process.kill("SIGTERM")
        expect(yield* child.exit("10 seconds")).toMatchObject({ code: 0 })
        expect([survivor, replacement].filter(alive)).toEqual([])
      })),
    60_000
  )

  it.live(
    "chatroom --workers 2 serves; a supervisor killed outright takes its workers with it",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const child = yield* supervisor("chatroom", "--port", "0", "--workers", "2")
        const { port, pids } = yield* started(child, 2)
        const peer = yield* connect(port, "chatter")
        yield* peer.write("/nick ada\n/who\n")
        yield* peer.received.contains("ada")
        child.process.kill("SIGKILL")
        yield* child.exit()
        // each worker sees its IPC channel close, and shuts down gracefully: the chatter is told
        yield* peer.received.contains("* the server is shutting down")
        for (let i = 0; i < 100 && pids.some(alive); i++) yield* Effect.sleep("50 millis")
        expect(pids.filter(alive)).toEqual([])
      })),
    60_000
  )

  it.live(
    "Ctrl-C to the whole process group, as a terminal sends it: every worker stops, none is restarted, exit 0",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const job = yield* startJob(process.execPath, [
          "--conditions=@effect-asynchat/source",
          "examples/cli.ts",
          "http11",
          "--port",
          "0",
          "--workers",
          "2"
        ])
        yield* job.waitFor(/(listening on 127\.0\.0\.1:\d+ \(worker \d+, pid \d+\)[^]*){2}/, "20 seconds")
        const pids = [...job.stdout().matchAll(/worker \d+ started \(pid (\d+)\)/g)].map((m) => Number(m[1]))
        expect(yield* job.signal("SIGINT", "10 seconds")).toMatchObject({ code: 0, signal: null })
        expect(pids.filter(alive)).toEqual([])
        expect(job.stdout()).not.toContain("restarting")
        // each on its own SIGINT (the supervisor's SIGTERM comes a second later, for one still running)
        expect(job.stdout().match(/stopped: exited with code 0/g), job.stdout()).toHaveLength(2)
      })),
    60_000
  )
})
