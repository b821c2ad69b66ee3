/**
 * The line-echo server `bench/servers.ts` measures as ours: every `\n`-terminated line back as it came, the
 * lines of each read handed over together (`Protocol.forEachBatch`) and pushed in one `push`. Idle timeouts
 * are off so the memory section can hold 10,000 silent connections; the connection cap is raised past that.
 *
 * Run: node --conditions=@effect-asynchat/source bench/servers/echo-lines.ts PORT
 * (prints "echo-lines listening on 127.0.0.1:PORT"; Ctrl-C stops it gracefully).
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Duration, Effect } from "effect"
import { Chat, ChatServer, Listener, Protocol, Terminator } from "effect-asynchat"

const NL = new Uint8Array([10])

// Protocol.forEachBatch: each read's lines arrive as one array, answered with one push; the connection's handle
// is taken once, not for every read.
export const EchoLines = Protocol.forEachBatch(
  Terminator.lf,
  Effect.map(Chat.Chat, (chat) => (batch) => {
    const out: Array<Uint8Array> = []
    for (let i = 0; i < batch.length; i++) {
      const line = batch[i]
      // A final unterminated line (the peer hung up mid-line) goes back as it came.
      out.push(line.bytes)
      if (line.terminated) out.push(NL)
    }
    return chat.push(...out)
  })
)

// Run as a script, not when imported (bench/overhead.ts reuses `EchoLines`).
if (import.meta.main) {
  const port = Number(process.argv[2] ?? 0)
  // `--frame-timeout` keeps the default 30 s frame timeout (slowloris), watched by the server's one watchdog.
  const frameTimeout = process.argv.includes("--frame-timeout") ? undefined : Duration.infinity
  Effect.scoped(Effect.gen(function*() {
    const server = yield* ChatServer.make(EchoLines, {
      maxFrameLength: 1024,
      idleTimeout: Duration.infinity,
      frameTimeout,
      maxConnections: 100_000
    })
    yield* Console.log(`echo-lines listening on ${Chat.formatAddress(server.address)}`)
    return yield* Effect.never
  })).pipe(
    Effect.provide(Listener.layerTcp({ host: "127.0.0.1", port, backlog: 4096 })),
    NodeRuntime.runMain
  )
}
