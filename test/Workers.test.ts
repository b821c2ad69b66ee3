/**
 * The supervisor, with real worker processes (test/fixtures/worker.ts) on 127.0.0.1: both strategies put every
 * worker on the one port; a worker killed is restarted with a new pid in its place; closing the scope stops them
 * all, one that ignores SIGTERM by SIGKILL after `stopTimeout`; a crash loop and an ended restart schedule fail
 * `join` with their reasons, every worker stopped.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Exit, Schedule, Scope } from "effect"
import * as Fs from "node:fs"
import * as Net from "node:net"
import * as Os from "node:os"
import * as Path from "node:path"
import { Workers } from "../src/index.ts"
import { alive } from "./helpers.ts"

const script = Path.join(import.meta.dirname, "fixtures", "worker.ts")

/** The options to run the fixture in `mode` on `port`. */
const fixture = (mode: "serve" | "crash" | "stubborn", port = 0): Omit<Workers.Options, "count"> => ({
  script,
  args: [],
  execArgv: [],
  env: { WORKER_MODE: mode, WORKER_PORT: String(port) }
})

/** The pid a `serve` worker answers a new connection with, or 0 if none answers. */
const askPid = (port: number) =>
  Effect.callback<number>((resume) => {
    const socket = Net.createConnection({ host: "127.0.0.1", port })
    let text = ""
    socket.on("data", (data) => (text += data.toString()))
    socket.once("end", () => resume(Effect.succeed(Number(text.trim()) || 0)))
    socket.once("error", () => resume(Effect.succeed(0)))
    return Effect.sync(() => socket.destroy())
  })

/** Asks for pids until `expected` have all answered; dies after 15 seconds with those seen. */
const seen = (port: number, expected: ReadonlyArray<number>) =>
  Effect.gen(function*() {
    const pids = new Set<number>()
    const deadline = Date.now() + 15_000
    while (!expected.every((pid) => pids.has(pid))) {
      if (Date.now() > deadline) return yield* Effect.die(`only ${[...pids]} answered, expected ${expected}`)
      const pid = yield* askPid(port)
      if (pid === 0) yield* Effect.sleep("50 millis")
      else pids.add(pid)
    }
    return pids
  })

/** Waits (up to 10 seconds) until `workers.pids` holds `n` pids for which `ok` holds. */
const pidsWhen = (
  workers: Workers.WorkersShape,
  n: number,
  ok: (pids: ReadonlyArray<number>) => boolean = () => true
) =>
  Effect.gen(function*() {
    for (let i = 0; i < 200; i++) {
      const pids = yield* workers.pids
      if (pids.length === n && ok(pids)) return pids
      yield* Effect.sleep("50 millis")
    }
    return yield* Effect.die(`workers' pids: ${yield* workers.pids}`)
  })

describe("Workers", () => {
  it("current: a worker's place and strategy, from its environment", () => {
    expect(Workers.current({})).toBeUndefined()
    expect(Workers.current({ EFFECT_ASYNCHAT_WORKER: "1", EFFECT_ASYNCHAT_WORKER_STRATEGY: "reusePort" })).toEqual({
      index: 1,
      strategy: "reusePort",
      reusePort: true
    })
    expect(Workers.current({ EFFECT_ASYNCHAT_WORKER: "0", EFFECT_ASYNCHAT_WORKER_STRATEGY: "cluster" })).toEqual({
      index: 0,
      strategy: "cluster",
      reusePort: false
    })
    expect(Workers.current({ EFFECT_ASYNCHAT_WORKER: "x" })).toBeUndefined()
  })

  for (const strategy of ["reusePort", "cluster"] as const) {
    it.live(
      `${strategy}: every worker serves the one port; closing the scope stops them all`,
      () =>
        Effect.gen(function*() {
          const port = yield* Workers.freePort("127.0.0.1")
          const scope = yield* Scope.make()
          const workers = yield* Workers.make({ count: 2, strategy, ...fixture("serve", port) }).pipe(
            Scope.provide(scope)
          )
          const pids = yield* pidsWhen(workers, 2)
          expect(new Set(pids).size).toBe(2)
          yield* seen(port, pids)
          yield* Scope.close(scope, Exit.void)
          expect(pids.filter(alive)).toEqual([])
          expect(yield* askPid(port)).toBe(0)
        }),
      30_000
    )
  }

  it.live(
    "a worker killed is restarted in its place with a new pid, which serves",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const port = yield* Workers.freePort("127.0.0.1")
        const workers = yield* Workers.make({ count: 2, ...fixture("serve", port) })
        const [victim, survivor] = yield* pidsWhen(workers, 2)
        process.kill(victim, "SIGKILL")
        const after = yield* pidsWhen(workers, 2, (pids) => !pids.includes(victim))
        expect(after[1]).toBe(survivor) // index 1 untouched; index 0 replaced
        yield* seen(port, after)
      })),
    30_000
  )

  it.live("a worker that ignores SIGTERM is killed stopTimeout after it", () =>
    Effect.gen(function*() {
      const ready = Path.join(Os.tmpdir(), `stubborn-worker-${process.pid}-${Date.now()}`)
      const options = fixture("stubborn")
      const scope = yield* Scope.make()
      const workers = yield* Workers.make({
        count: 1,
        stopTimeout: "300 millis",
        ...options,
        env: { ...options.env, WORKER_READY: ready }
      }).pipe(Scope.provide(scope))
      const [pid] = yield* pidsWhen(workers, 1)
      // its SIGTERM handler is installed once the file is there (a loaded machine takes a while to start Node)
      for (let i = 0; i < 300 && !Fs.existsSync(ready); i++) yield* Effect.sleep("50 millis")
      Fs.rmSync(ready)
      const began = Date.now()
      yield* Scope.close(scope, Exit.void)
      const took = Date.now() - began
      expect(took).toBeGreaterThanOrEqual(300)
      expect(took).toBeLessThan(3000)
      expect(alive(pid)).toBe(false)
    }), 30_000)

  it.live("a crash loop fails join with CrashLoop, after the restarts allowed", () =>
    Effect.gen(function*() {
      const began = Date.now()
      const error = yield* Workers.run({
        count: 2,
        restart: Schedule.spaced("10 millis"),
        maxRestarts: { restarts: 3, window: "1 minute" },
        ...fixture("crash")
      }).pipe(Effect.flip, Effect.timeout("20 seconds"))
      expect(error.reason).toBe("CrashLoop")
      expect(error.message).toMatch(
        /^4 worker exits within 1m \(at most 3 restarts\): the last, worker \d \(pid \d+\), exited with code 3$/
      )
      expect(Date.now() - began).toBeLessThan(20_000)
    }), 30_000)

  it.live("an ended restart schedule fails join with RestartsExhausted", () =>
    Effect.gen(function*() {
      const error = yield* Workers.run({ count: 1, restart: Schedule.recurs(1), ...fixture("crash") }).pipe(
        Effect.flip,
        Effect.timeout("20 seconds")
      )
      expect(error.reason).toBe("RestartsExhausted")
      expect(error.message).toMatch(/the restart schedule of worker 0 ended; its last exit: pid \d+ exited with code 3/)
    }), 30_000)

  it.effect("count must be at least 1", () =>
    Effect.gen(function*() {
      const error = yield* Workers.run({ count: 0 }).pipe(Effect.flip)
      expect(error.reason).toBe("InvalidOptions")
    }))
})
