/**
 * A server on every core: a supervisor that runs N copies of the same program as worker processes sharing one
 * port, stops them gracefully with its scope, and restarts one that dies.
 *
 * - Each worker is the supervisor's own script run again (same Node flags, same arguments) with
 *   `EFFECT_ASYNCHAT_WORKER` set, so one command starts everything; `Workers.current()` tells a worker which it
 *   is. Under the `"reusePort"` strategy (the default on Linux and FreeBSD) each worker is a plain child process
 *   that listens on the port itself with `reusePort: true`, and the kernel spreads new connections over them;
 *   under `"cluster"` (elsewhere) workers are `node:cluster` workers and listen without it, on the primary's
 *   shared handle.
 * - Port 0 cannot be shared: each worker would get a port of its own. Pick one first (`Workers.freePort`) and
 *   tell the workers (an environment variable in `env`); another program may take it between the two.
 * - Closing the scope (the supervisor's SIGTERM or Ctrl-C, under `NodeRuntime.runMain`) sends every worker
 *   SIGTERM, so each runs its own graceful shutdown, waits up to `stopTimeout` for it, then sends SIGKILL. A
 *   worker whose supervisor vanishes (its IPC channel closes) sends itself SIGTERM (`Workers.followSupervisor`).
 * - A worker that exits while the supervisor is not stopping is logged with its pid and exit code or signal and
 *   started again after the next delay of `restart` (a `Schedule`, one per worker, started afresh after a worker
 *   that ran longer than `maxRestarts.window`; exponential from 100 ms, capped at 5 s, by default). An exit
 *   within 5 seconds of a SIGINT or SIGTERM to the supervisor is taken for the worker's own shutdown (Ctrl-C
 *   signals the terminal's whole process group, systemd a service's whole cgroup), and such a worker is given a
 *   second to exit on its own before the supervisor's SIGTERM. More than `maxRestarts.restarts` restarts, all
 *   workers together, within `maxRestarts.window` is a crash loop: the supervisor stops every worker and fails
 *   with `WorkersError`.
 *
 * @since 0.1.0
 */
import { Data, Deferred, Duration, Effect, Exit, Fiber, Schedule, type Scope } from "effect"
import * as ChildProcess from "node:child_process"
import * as Cluster from "node:cluster"
import * as Net from "node:net"
import { ignore } from "./internal/transport.ts"

/**
 * How workers share the port: each its own socket bound with `SO_REUSEPORT` (`"reusePort"`), or `node:cluster`'s
 * handle shared by the primary (`"cluster"`).
 *
 * @example
 * ```ts
 * import type { Workers } from "effect-asynchat"
 *
 * const portable: Workers.Strategy = "cluster"
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export type Strategy = "reusePort" | "cluster"

/**
 * `"reusePort"` where Node binds with `SO_REUSEPORT` and the kernel balances connections over the sockets
 * (Linux, FreeBSD), `"cluster"` elsewhere.
 *
 * @example
 * ```ts
 * import { Workers } from "effect-asynchat"
 *
 * console.log(`workers share the port by ${Workers.defaultStrategy}`)
 * ```
 *
 * @category constants
 * @since 0.1.0
 */
export const defaultStrategy: Strategy = process.platform === "linux" || process.platform === "freebsd"
  ? "reusePort"
  : "cluster"

/** The environment variables a worker is started with. */
const WORKER_ENV = "EFFECT_ASYNCHAT_WORKER"
const STRATEGY_ENV = "EFFECT_ASYNCHAT_WORKER_STRATEGY"

/**
 * What a worker knows of itself: its place among the workers (0 to N - 1, kept by its replacement) and how it
 * must listen.
 *
 * @example
 * ```ts
 * import { Listener, type Workers } from "effect-asynchat"
 *
 * const listenerOf = (worker: Workers.WorkerInfo, port: number) =>
 *   Listener.layerTcp({ port, reusePort: worker.reusePort })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkerInfo {
  readonly index: number
  readonly strategy: Strategy
  /** Whether its listener must ask for `reusePort` (under the `"reusePort"` strategy). */
  readonly reusePort: boolean
}

/**
 * This process as a worker of a supervisor, or undefined when it is not one (it is the supervisor, or runs
 * alone). Read from the environment (`process.env` unless given).
 *
 * @example
 * ```ts
 * import { Workers } from "effect-asynchat"
 *
 * const role = Workers.current() === undefined ? "supervisor" : `worker ${Workers.current()?.index}`
 * ```
 *
 * @category accessors
 * @since 0.1.0
 */
export const current = (env: NodeJS.ProcessEnv = process.env): WorkerInfo | undefined => {
  const index = Number(env[WORKER_ENV])
  if (env[WORKER_ENV] === undefined || !Number.isSafeInteger(index) || index < 0) return undefined
  const strategy: Strategy = env[STRATEGY_ENV] === "cluster" ? "cluster" : "reusePort"
  return { index, strategy, reusePort: strategy === "reusePort" }
}

/** A worker's supervisor is gone: the worker's own graceful shutdown, as the supervisor would have asked. */
const onDisconnect = () => process.kill(process.pid, "SIGTERM")

/**
 * In a worker started by a supervisor, for as long as the scope is open: once the supervisor is gone (its IPC
 * channel closes: it was killed, even by SIGKILL), the worker sends itself SIGTERM and so shuts down gracefully,
 * rather than holding the port with no one to stop it (a cluster worker exits on its own when its primary goes).
 * Does nothing in any other process.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Workers } from "effect-asynchat"
 *
 * const worker = Effect.scoped(Effect.andThen(Workers.followSupervisor, Effect.never))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const followSupervisor: Effect.Effect<void, never, Scope.Scope> = Effect.suspend(() => {
  if (current()?.strategy !== "reusePort" || !process.connected) return Effect.void
  return Effect.acquireRelease(
    Effect.sync(() => {
      process.once("disconnect", onDisconnect)
    }),
    () => Effect.sync(() => void process.off("disconnect", onDisconnect))
  )
})

/**
 * How a worker ended: its place, its pid, and its exit code or the signal that killed it.
 *
 * @example
 * ```ts
 * import type { Workers } from "effect-asynchat"
 *
 * const describe = (exit: Workers.WorkerExit) => `${exit.pid}: ${exit.signal ?? exit.code}`
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkerExit {
  readonly index: number
  readonly pid: number
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
}

/**
 * The supervisor could not go on: `count` was not a positive whole number (`InvalidOptions`), a worker could not
 * be started (`SpawnFailed`), workers died more often than
 * `maxRestarts` allows (`CrashLoop`), the `restart` schedule ended (`RestartsExhausted`), or no free port was
 * found (`NoFreePort`). Every worker still running has been stopped.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import type { Workers } from "effect-asynchat"
 *
 * const report = (error: Workers.WorkersError) => Effect.logError(`${error.reason}: ${error.message}`)
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class WorkersError extends Data.TaggedError("WorkersError")<{
  readonly reason: "InvalidOptions" | "SpawnFailed" | "CrashLoop" | "RestartsExhausted" | "NoFreePort"
  readonly message: string
  readonly cause?: unknown
}> {}

/**
 * The supervisor's options. Only `count` is required.
 *
 * @example
 * ```ts
 * import { Schedule } from "effect"
 * import type { Workers } from "effect-asynchat"
 *
 * const options: Workers.Options = {
 *   count: 4,
 *   env: { PORT: "8080" },
 *   stopTimeout: "10 seconds",
 *   restart: Schedule.spaced("1 second"),
 *   maxRestarts: { restarts: 10, window: "1 minute" }
 * }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** How many workers (at least 1). */
  readonly count: number
  /** How the workers share the port (default `defaultStrategy`). */
  readonly strategy?: Strategy | undefined
  /** The script a worker runs (default this process's, `process.argv[1]`). */
  readonly script?: string | undefined
  /** Its arguments (default this process's, `process.argv.slice(2)`). */
  readonly args?: ReadonlyArray<string> | undefined
  /** Node's flags for it (default this process's, `process.execArgv`). */
  readonly execArgv?: ReadonlyArray<string> | undefined
  /** Set in every worker's environment, over this process's. */
  readonly env?: Readonly<Record<string, string>> | undefined
  /** How long a worker has to exit after SIGTERM before it is sent SIGKILL (default 10 seconds). */
  readonly stopTimeout?: Duration.Input | undefined
  /**
   * The delays between a worker's unexpected exit and its restart, one schedule per worker, its input each exit,
   * started afresh after a worker that ran longer than `maxRestarts.window` (default exponential from 100 ms,
   * doubling, capped at 5 s). When it ends, the supervisor fails with `RestartsExhausted`.
   */
  readonly restart?: Schedule.Schedule<unknown, WorkerExit> | undefined
  /** At most this many restarts of all workers within `window` (default 10 in 1 minute); one more is a crash loop. */
  readonly maxRestarts?: { readonly restarts: number; readonly window: Duration.Input } | undefined
}

/**
 * A running set of workers.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Workers } from "effect-asynchat"
 *
 * const program = Effect.scoped(Effect.gen(function*() {
 *   const workers = yield* Workers.make({ count: 2 })
 *   yield* Effect.log(`workers: ${(yield* workers.pids).join(", ")}`)
 *   return yield* workers.join
 * }))
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface WorkersShape {
  /** The pids of the workers running now, by index (a worker being restarted is missing). */
  readonly pids: Effect.Effect<ReadonlyArray<number>>
  /** Waits while the workers run: fails when the supervisor gives up (`CrashLoop`, `RestartsExhausted`, ...). */
  readonly join: Effect.Effect<never, WorkersError>
}

/** Exponential from 100 ms, capped at 5 s: the first restart is quick, a crashing worker soon waits seconds. */
const defaultRestart: Schedule.Schedule<unknown, WorkerExit> = Schedule.min([
  Schedule.exponential("100 millis"),
  Schedule.spaced("5 seconds")
])

/** How long after a SIGINT or SIGTERM to the supervisor a worker's exit is taken for its shutdown. */
const SIGNAL_GRACE_MILLIS = 5000

/** How long a worker signalled with its supervisor is given to exit on its own before the supervisor's SIGTERM. */
const HEAD_START_MILLIS = 1000

const describeExit = (exit: WorkerExit) =>
  exit.signal === null ? `exited with code ${exit.code}` : `was killed by ${exit.signal}`

/**
 * Starts `count` workers and supervises them, scoped: closing the scope stops them all gracefully (SIGTERM,
 * then SIGKILL after `stopTimeout`). A worker that exits unexpectedly is restarted after its `restart` delay;
 * too many restarts make `join` fail, with every worker stopped.
 *
 * @example
 * ```ts
 * import { NodeRuntime } from "@effect/platform-node"
 * import { Effect } from "effect"
 * import { ChatServer, Listener, type Protocol, Workers } from "effect-asynchat"
 *
 * declare const protocol: Protocol.Protocol<never, never>
 *
 * const worker = Workers.current()
 * const program = worker === undefined
 *   ? Effect.scoped(Effect.flatMap(Workers.make({ count: 4 }), (workers) => workers.join))
 *   : Effect.scoped(Effect.andThen(ChatServer.make(protocol), Effect.never)).pipe(
 *     Effect.provide(Listener.layerTcp({ port: 7000, reusePort: worker.reusePort }))
 *   )
 * program.pipe(NodeRuntime.runMain)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make = (options: Options): Effect.Effect<WorkersShape, WorkersError, Scope.Scope> =>
  Effect.gen(function*() {
    if (!Number.isSafeInteger(options.count) || options.count < 1) {
      return yield* new WorkersError({
        reason: "InvalidOptions",
        message: `count must be at least 1: ${options.count}`
      })
    }
    const strategy = options.strategy ?? defaultStrategy
    const stopTimeout = Duration.fromInputUnsafe(options.stopTimeout ?? "10 seconds")
    const limit = options.maxRestarts ?? { restarts: 10, window: "1 minute" }
    const window = Duration.toMillis(Duration.fromInputUnsafe(limit.window))
    const pids = new Map<number, number>()
    const restarts: Array<number> = []
    // When a SIGINT or SIGTERM came, seen before the runtime's interruption reaches us: a Ctrl-C reaches the
    // workers too (the terminal signals the whole group, systemd its whole cgroup), and their exits soon after are
    // not crashes. A program that goes on after the signal still has its workers restarted, after the grace.
    let signalled = Number.NEGATIVE_INFINITY
    const onSignal = () => {
      signalled = Date.now()
    }
    yield* Effect.acquireRelease(
      Effect.sync(() => {
        // first: the runtime's own listener interrupts us, and our finalizers run, within its call
        process.prependListener("SIGINT", onSignal)
        process.prependListener("SIGTERM", onSignal)
      }),
      () =>
        Effect.sync(() => {
          process.off("SIGINT", onSignal)
          process.off("SIGTERM", onSignal)
        })
    )
    const spawn = spawner(strategy, options)
    const restart = options.restart ?? defaultRestart

    /** One run of the worker at `index`: started, awaited; stopped (SIGTERM, then SIGKILL) if interrupted. */
    const runOnce = (index: number) =>
      Effect.acquireUseRelease(
        Effect.try({
          try: () => spawn(index),
          catch: (cause) =>
            new WorkersError({ reason: "SpawnFailed", message: `cannot start worker ${index}: ${cause}`, cause })
        }),
        (child) =>
          Effect.gen(function*() {
            pids.set(index, child.pid)
            yield* Effect.logInfo(`worker ${index} started (pid ${child.pid})`)
            return yield* Deferred.await(child.exited)
          }),
        (child, outcome) =>
          Effect.gen(function*() {
            pids.delete(index)
            // an exit seen is the slot's to log; otherwise we are stopping it (it may have exited meanwhile)
            if (Exit.isSuccess(outcome)) return
            // A Ctrl-C reached the worker too: a head start before our SIGTERM, which, landing as it exits, would
            // kill it with its work done but its exit a signal's.
            if (!child.done() && Date.now() - signalled < SIGNAL_GRACE_MILLIS) {
              yield* Deferred.await(child.exited).pipe(
                Effect.timeoutOption(Duration.min(stopTimeout, Duration.millis(HEAD_START_MILLIS)))
              )
            }
            if (!child.done()) {
              child.process.kill("SIGTERM")
              const exited = yield* Deferred.await(child.exited).pipe(Effect.timeoutOption(stopTimeout))
              if (exited._tag === "None") {
                yield* Effect.logWarning(
                  `worker ${index} (pid ${child.pid}) still running ${
                    Duration.format(stopTimeout)
                  } after SIGTERM: SIGKILL`
                )
                child.process.kill("SIGKILL")
              }
            }
            const exit = yield* Deferred.await(child.exited)
            yield* Effect.logInfo(`worker ${index} (pid ${child.pid}) stopped: ${describeExit(exit)}`)
          })
      )

    /** The worker at `index`, started again after each unexpected exit, until the schedule or the limit says no. */
    const slot = (index: number) =>
      Effect.gen(function*() {
        let step = yield* Schedule.toStepWithSleep(restart)
        for (;;) {
          const started = Date.now()
          const exit = yield* runOnce(index)
          if (Date.now() - signalled < SIGNAL_GRACE_MILLIS) {
            yield* Effect.logInfo(`worker ${index} (pid ${exit.pid}) stopped: ${describeExit(exit)}`)
            // the supervisor's interruption is on its way; if none comes, the signal did not stop us
            yield* Effect.sleep(SIGNAL_GRACE_MILLIS)
          }
          const now = Date.now()
          // a worker that ran longer than the window crashed once, not in a loop: its backoff starts afresh
          if (now - started > window) step = yield* Schedule.toStepWithSleep(restart)
          while (restarts.length > 0 && restarts[0] <= now - window) restarts.shift()
          if (restarts.length >= limit.restarts) {
            yield* Effect.logError(`worker ${index} (pid ${exit.pid}) ${describeExit(exit)}: too many restarts`)
            return yield* new WorkersError({
              reason: "CrashLoop",
              message: `${restarts.length + 1} worker exits within ${
                Duration.format(Duration.millis(window))
              } (at most ${limit.restarts} restarts): the last, worker ${index} (pid ${exit.pid}), ${
                describeExit(exit)
              }`
            })
          }
          restarts.push(now)
          yield* Effect.logWarning(`worker ${index} (pid ${exit.pid}) ${describeExit(exit)}: restarting it`)
          // the schedule's end is its only failure
          yield* step(exit).pipe(Effect.mapError(() =>
            new WorkersError({
              reason: "RestartsExhausted",
              message: `the restart schedule of worker ${index} ended; its last exit: pid ${exit.pid} ${
                describeExit(exit)
              }`
            })
          ))
        }
      })

    const all = Array.from({ length: options.count }, (_, index) => slot(index))
    const supervisor = yield* Effect.forkScoped(
      Effect.all(all, { concurrency: "unbounded", discard: true }) as Effect.Effect<never, WorkersError>
    )
    return {
      pids: Effect.sync(() => [...pids.entries()].toSorted(([a], [b]) => a - b).map(([, pid]) => pid)),
      join: Fiber.join(supervisor)
    }
  })

/**
 * Starts `count` workers and supervises them until interrupted (then stops them gracefully), or until it gives
 * up: `make`, joined.
 *
 * @example
 * ```ts
 * import { NodeRuntime } from "@effect/platform-node"
 * import { Workers } from "effect-asynchat"
 *
 * if (Workers.current() === undefined) Workers.run({ count: 4 }).pipe(NodeRuntime.runMain)
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const run = (options: Options): Effect.Effect<never, WorkersError> =>
  Effect.scoped(Effect.flatMap(make(options), (workers) => workers.join))

/**
 * A TCP port free on `host` now, for workers to share: bound on port 0 and released. Another program may take it
 * before the workers bind it.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Workers } from "effect-asynchat"
 *
 * const options = Effect.map(Workers.freePort("127.0.0.1"), (port) => ({ count: 2, env: { PORT: String(port) } }))
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const freePort = (host?: string): Effect.Effect<number, WorkersError> =>
  Effect.callback<number, WorkersError>((resume) => {
    const server = Net.createServer()
    server.once(
      "error",
      (cause) =>
        resume(
          Effect.fail(new WorkersError({ reason: "NoFreePort", message: `no free port: ${cause.message}`, cause }))
        )
    )
    server.listen({ port: 0, host }, () => {
      const { port } = server.address() as Net.AddressInfo
      server.close(() => resume(Effect.succeed(port)))
    })
  })

/** A worker process as the supervisor holds it. */
interface Child {
  readonly process: ChildProcess.ChildProcess
  readonly pid: number
  readonly exited: Deferred.Deferred<WorkerExit>
  readonly done: () => boolean
}

/** Starts the worker at an index (throws if it cannot), as a plain child or a cluster worker. */
const spawner = (strategy: Strategy, options: Options) => {
  const script = options.script ?? process.argv[1]
  const args = [...(options.args ?? process.argv.slice(2))]
  const execArgv = [...(options.execArgv ?? process.execArgv)]
  return (index: number): Child => {
    const env = { ...process.env, ...options.env, [WORKER_ENV]: String(index), [STRATEGY_ENV]: strategy }
    let child: ChildProcess.ChildProcess
    if (strategy === "cluster") {
      const cluster = Cluster.default
      cluster.setupPrimary({ exec: script, args, execArgv })
      const worker = cluster.fork(env)
      // cluster re-emits its process's errors on the Worker: one without a listener would be uncaught
      worker.on("error", ignore)
      child = worker.process
    } else {
      // an IPC channel, so that a worker sees its supervisor go (`followSupervisor`); output is the supervisor's
      child = ChildProcess.spawn(process.execPath, [...execArgv, script, ...args], {
        env,
        stdio: ["inherit", "inherit", "inherit", "ipc"]
      })
    }
    // before the pid's check: a spawn that failed (EAGAIN, ENOENT) emits its 'error' a tick later
    child.on("error", ignore) // a failed spawn, kill or IPC write: the exit (or the throw below) says what
    if (child.pid === undefined) {
      child.kill("SIGKILL")
      throw new Error(`${script}: no pid`)
    }
    const pid = child.pid
    const exited = Deferred.makeUnsafe<WorkerExit>()
    child.once("exit", (code, signal) => Deferred.doneUnsafe(exited, Effect.succeed({ index, pid, code, signal })))
    return { process: child, pid, exited, done: () => child.exitCode !== null || child.signalCode !== null }
  }
}
