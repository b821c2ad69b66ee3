import { describe, expect, it } from "@effect/vitest"
import { Effect } from "effect"
import { connect, listeningPort, spawn } from "./peers.ts"

/** The README's quick-start programs, run as the README says (`npx node` is this very Node). */
const node = (file: string, ...args: ReadonlyArray<string>) =>
  spawn(process.execPath, ["--conditions=@effect-asynchat/source", file, ...args])

describe("the README's quick start", () => {
  it.live(
    "the server upper-cases lines, answers QUIT with BYE and closes, and refuses a line too long",
    () =>
      Effect.scoped(Effect.gen(function*() {
        const server = yield* node("examples/quickstart-server.ts", "0")
        const port = yield* listeningPort(server)
        const client = yield* node("examples/quickstart-client.ts", String(port), "hello", "world", "QUIT")
        expect(yield* client.exit("10 seconds")).toMatchObject({ code: 0 })
        expect(client.stdout.text).toBe("HELLO\nWORLD\nBYE\n")
        const peer = yield* connect(port)
        yield* peer.write(`${"x".repeat(2000)}\n`)
        yield* peer.received.endOf()
        expect(peer.received.text).toBe("ERR line too long\n")
        server.process.kill("SIGINT")
        expect(yield* server.exit("10 seconds")).toMatchObject({ signal: null })
      })),
    30_000
  )
})
