/**
 * examples/stdio.ts, asyncore's `file_dispatcher`: the command interpreter run as a child process, fed through a
 * pipe and driven interactively through its stdin/stdout by our own `ChatClient.duplex`; and the same protocol
 * on a TCP socket, to show it does not care what it runs on.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Stream } from "effect"
import { Commands, HELP, interpret, MAX_LINE } from "../../examples/stdio.ts"
import { ChatClient, Terminator } from "../../src/index.ts"
import { cli, connect, serve } from "./peers.ts"

const text = (bytes: Uint8Array) => new TextDecoder().decode(bytes)

describe("stdio: the interpreter", () => {
  it("answers each command, pure", () => {
    expect(interpret("add 1 2")).toEqual({ reply: "3", quit: false })
    expect(interpret("  add -1.5 4 10  \r")).toEqual({ reply: "12.5", quit: false })
    expect(interpret("add 1 two")).toEqual({ reply: `error: add takes numbers, got "1 two"`, quit: false })
    expect(interpret("upper hello  world")).toEqual({ reply: "HELLO  WORLD", quit: false })
    expect(interpret("lower ÉTÉ")).toEqual({ reply: "été", quit: false })
    expect(interpret("help")).toEqual({ reply: HELP, quit: false })
    expect(interpret("")).toEqual({ reply: undefined, quit: false })
    expect(interpret("quit")).toEqual({ reply: "bye", quit: true })
    expect(interpret("rm -rf /")).toEqual({ reply: `error: unknown command "rm" (try help)`, quit: false })
  })
})

// each test starts its own child: run them side by side
describe.concurrent("stdio: a child process fed through a pipe", () => {
  it.live("answers line by line, stops at quit, and exits 0", () =>
    Effect.gen(function*() {
      const child = yield* cli("stdio")
      yield* child.end("add 1 2\nupper hello\nfoo\n\nhelp\r\nquit\nadd 3 4\n")
      expect(yield* child.exit("10 seconds")).toMatchObject({ code: 0, signal: null })
      expect(child.stdout.text).toBe(`3\nHELLO\nerror: unknown command "foo" (try help)\n${HELP}\nbye\n`)
      expect(child.stderr.text).toBe("")
    }))

  it.live("at the end of input answers a last line that has no newline, and exits 0", () =>
    Effect.gen(function*() {
      const child = yield* cli("stdio")
      yield* child.end("add 2 2\nlower LAST")
      expect(yield* child.exit("10 seconds")).toMatchObject({ code: 0, signal: null })
      expect(child.stdout.text).toBe("4\nlast\n")
    }))

  it.live("answers a line too long with an error on stdout, says why on stderr, and exits 1", () =>
    Effect.gen(function*() {
      const child = yield* cli("stdio")
      yield* child.end(`add 1 1\n${"x".repeat(MAX_LINE + 1)}\nadd 5 5\n`)
      expect(yield* child.exit("10 seconds")).toMatchObject({ code: 1, signal: null })
      expect(child.stdout.text).toBe(`2\nerror: line longer than ${MAX_LINE} bytes\n`)
      expect(child.stderr.text).toMatch(
        /^stdio: Frame too long: .* exceeds the limit of 4096 bytes \(terminator [^)]*\)\n$/
      )
    }))
})

describe("stdio: a child process driven through its pipes by ChatClient.duplex", () => {
  it.live("each answer arrives before the next command is sent; quit ends the child with 0", () =>
    Effect.gen(function*() {
      const child = yield* cli("stdio")
      const answers = yield* Effect.scoped(Effect.gen(function*() {
        const client = yield* ChatClient.connect(
          ChatClient.duplex(
            "stdio child",
            Effect.sync(() => ChatClient.duplexOf(child.process.stdout, child.process.stdin))
          ),
          { terminator: Terminator.lf, connectTimeout: "5 seconds" }
        )
        // one run per answer: the child answers while its stdin is still open. Safe only because each answer is
        // awaited before the next command (a run drops the rest of its batch: see test/InputRerun.test.ts)
        const answers: Array<string> = []
        for (const command of ["add 40 2", "upper effect", "nope", "quit"]) {
          yield* client.chat.push(command, "\n")
          const answer = yield* Stream.runHead(client.input).pipe(Effect.timeout("10 seconds"))
          answers.push(answer._tag === "Some" ? text(answer.value.bytes) : "<end of input>")
        }
        // after quit, the child's stdout ends: our input does too
        const after = yield* Stream.runCollect(client.input).pipe(Effect.timeout("5 seconds"))
        answers.push(`then ${after.length} more`)
        return answers
      }))
      expect(answers).toEqual(["42", "EFFECT", `error: unknown command "nope" (try help)`, "bye", "then 0 more"])
      expect(yield* child.exit()).toMatchObject({ code: 0, signal: null })
    }))
})

describe("stdio: the same protocol on a socket", () => {
  it.live("over TCP it answers the same and closes after quit", () =>
    serve(Commands, {}, (port) =>
      Effect.gen(function*() {
        const peer = yield* connect(port)
        yield* peer.write("add 1 2\nupper tcp\nquit\nadd 9 9\n")
        yield* peer.received.endOf()
        expect(peer.received.text).toBe("3\nTCP\nbye\n")
      })))
})
