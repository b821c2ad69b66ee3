/**
 * What the end-to-end tests of the HTTP examples share: a server on a system-chosen TCP port, child processes
 * (curl, the examples' CLI) with their output and exit, and a raw `node:net` client that sends exact bytes and
 * records whether the server closed.
 */
import { type Duration, Effect } from "effect"
import * as ChildProcess from "node:child_process"
import * as Net from "node:net"
import { root } from "./peers.ts"

// One way to serve on a system-chosen port, shared with the other examples' tests.
export { root, serve as withServer } from "./peers.ts"

/** How a child process ended, and everything it wrote. */
export interface Finished {
  readonly code: number | null
  readonly signal: NodeJS.Signals | null
  readonly stdout: Buffer
  readonly stderr: string
}

/** Runs `command` to its end; killed, and a defect, if it runs longer than `timeout`. */
export const runProcess = (
  command: string,
  args: ReadonlyArray<string>,
  options: { readonly timeout?: Duration.Input; readonly cwd?: string } = {}
): Effect.Effect<Finished> =>
  Effect.callback<Finished>((resume) => {
    const child = ChildProcess.spawn(command, args, { cwd: options.cwd ?? root, stdio: ["ignore", "pipe", "pipe"] })
    const stdout: Array<Buffer> = []
    const stderr: Array<Buffer> = []
    child.stdout.on("data", (data: Buffer) => stdout.push(data))
    child.stderr.on("data", (data: Buffer) => stderr.push(data))
    child.once("error", (error) => resume(Effect.die(error)))
    child.once("close", (code, signal) =>
      resume(Effect.succeed({
        code,
        signal,
        stdout: Buffer.concat(stdout),
        stderr: Buffer.concat(stderr).toString()
      })))
    return Effect.sync(() => void child.kill("SIGKILL"))
  }).pipe(
    Effect.timeoutOrElse({
      duration: options.timeout ?? "10 seconds",
      orElse: () => Effect.die(new Error(`${command} ${args.join(" ")} did not finish in time`))
    })
  )

/** curl, silent but for errors, bounded to 5 seconds (a server that never closes makes it fail with 28). */
export const runCurl = (...args: ReadonlyArray<string>) => runProcess("curl", ["-sS", "--max-time", "5", ...args])

/** The examples' CLI as `npm start` runs it, without npm in between. */
export const cli = (...args: ReadonlyArray<string>) =>
  runProcess(process.execPath, ["--conditions=@effect-asynchat/source", "examples/cli.ts", ...args])

/** A request a server must refuse: the bytes sent (in these writes, then a FIN if `halfClose`) and the answer. */
export interface Refusal {
  readonly name: string
  readonly request: ReadonlyArray<string>
  readonly halfClose?: boolean
  readonly expected: string
}

/** What a raw client received, one char per byte, and whether the server ended the connection. */
export interface Exchange {
  readonly received: string
  readonly serverClosed: boolean
}

/**
 * Connects, writes `pieces` one by one (`pauseMillis`, 20 by default, between them, so each travels on its own), then waits
 * for the server to close; with `halfClose` it also sends its own FIN after the last piece. Dies, saying what
 * arrived, if the server has not closed within 5 seconds.
 */
export const rawExchange = (
  port: number,
  pieces: ReadonlyArray<string | Uint8Array>,
  options: { readonly halfClose?: boolean; readonly pauseMillis?: number } = {}
): Effect.Effect<Exchange> =>
  Effect.callback<Exchange>((resume) => {
    // no Nagle: each piece travels on its own, however short the pause
    const socket = Net.createConnection({ host: "127.0.0.1", port, allowHalfOpen: true, noDelay: true })
    const received: Array<Buffer> = []
    const text = () => Buffer.concat(received).toString("latin1")
    let timer: NodeJS.Timeout | undefined = undefined
    const write = (index: number) => {
      if (index === pieces.length) {
        if (options.halfClose === true) socket.end()
        return
      }
      socket.write(pieces[index])
      timer = setTimeout(() => write(index + 1), options.pauseMillis ?? 20)
    }
    socket.once("connect", () => write(0))
    socket.on("data", (data: Buffer) => received.push(data))
    socket.once("end", () => resume(Effect.succeed({ received: text(), serverClosed: true })))
    socket.once("error", (error) => resume(Effect.die(new Error(`${error.message} after ${JSON.stringify(text())}`))))
    return Effect.sync(() => {
      clearTimeout(timer)
      socket.destroy()
    })
  }).pipe(
    Effect.timeoutOrElse({
      duration: "5 seconds",
      orElse: () => Effect.die(new Error("the server did not close the connection within 5 seconds"))
    })
  )

/** A port nobody listens on: bound on 0 and released again. */
export const freePort = Effect.callback<number>((resume) => {
  const server = Net.createServer()
  server.listen(0, "127.0.0.1", () => {
    const { port } = server.address() as Net.AddressInfo
    server.close(() => resume(Effect.succeed(port)))
  })
})

/** Whether something accepts connections on `port` now. */
export const isListening = (port: number) =>
  Effect.callback<boolean>((resume) => {
    const socket = Net.createConnection({ host: "127.0.0.1", port })
    socket.once("connect", () => {
      socket.destroy()
      resume(Effect.succeed(true))
    })
    socket.once("error", () => resume(Effect.succeed(false)))
    return Effect.sync(() => socket.destroy())
  })

/** A long-running child in its own process group, as a terminal runs a foreground job. */
export interface Job {
  readonly child: ChildProcess.ChildProcess
  /** Everything it has written to stdout so far. */
  readonly stdout: () => string
  /** Waits until stdout matches `pattern`; dies, showing the output, after `timeout`. */
  readonly waitFor: (pattern: RegExp, timeout?: Duration.Input) => Effect.Effect<RegExpExecArray>
  /** Sends `signal` to the whole group, as Ctrl-C does, and waits for the child to exit; dies after `timeout`. */
  readonly signal: (
    signal: NodeJS.Signals,
    timeout?: Duration.Input
  ) => Effect.Effect<{ readonly code: number | null; readonly signal: NodeJS.Signals | null }>
}

/** Starts `command` in a new process group; whatever is left of the group is killed when the scope closes. */
export const startJob = (command: string, args: ReadonlyArray<string>) =>
  Effect.acquireRelease(
    Effect.sync((): Job => {
      const child = ChildProcess.spawn(command, args, { cwd: root, detached: true, stdio: ["ignore", "pipe", "pipe"] })
      let stdout = ""
      let stderr = ""
      const changed = new Set<() => void>()
      const wake = () => changed.forEach((f) => f())
      child.stdout.on("data", (data: Buffer) => {
        stdout += data.toString()
        wake()
      })
      child.stderr.on("data", (data: Buffer) => (stderr += data.toString()))
      child.on("exit", wake)
      const exited = () => child.exitCode !== null || child.signalCode !== null
      const until = <A>(what: string, check: () => A | undefined, timeout: Duration.Input) =>
        Effect.callback<A>((resume) => {
          const f = () => {
            const found = check()
            if (found !== undefined) resume(Effect.succeed(found))
            else if (exited()) resume(Effect.die(new Error(`${command} exited before ${what}: ${stdout}${stderr}`)))
          }
          changed.add(f)
          f()
          return Effect.sync(() => changed.delete(f))
        }).pipe(
          Effect.timeoutOrElse({
            duration: timeout,
            orElse: () => Effect.die(new Error(`timed out waiting for ${what}; stdout: ${stdout}; stderr: ${stderr}`))
          })
        )
      return {
        child,
        stdout: () => stdout,
        waitFor: (pattern, timeout = "10 seconds") =>
          until(String(pattern), () => pattern.exec(stdout) ?? undefined, timeout),
        signal: (signal, timeout = "3 seconds") =>
          Effect.sync(() => process.kill(-child.pid!, signal)).pipe(
            Effect.andThen(
              until(
                "its exit",
                () => exited() ? { code: child.exitCode, signal: child.signalCode } : undefined,
                timeout
              )
            )
          )
      }
    }),
    ({ child }) =>
      Effect.sync(() => {
        try {
          process.kill(-child.pid!, "SIGKILL")
        } catch {
          // the group is gone already
        }
      })
  )

/** The exact answer the http-server example gives for `status` (code and reason) with `body` (one char per byte). */
export const httpServerAnswer = (status: string, body: string) =>
  `HTTP/1.0 ${status}\r\n` +
  "Server: effect-asynchat\r\n" +
  "Content-Type: text/plain; charset=utf-8\r\n" +
  `Content-Length: ${body.length}\r\n` +
  "Connection: close\r\n" +
  "\r\n" +
  body
