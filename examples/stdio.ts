/**
 * stdio — asyncore's `file_dispatcher`: a channel over file descriptors instead of a socket. A small command
 * interpreter, one command per line on stdin, one answer per line on stdout; the same protocol runs unchanged on
 * a socket or on a child process's pipes (`ChatClient.duplex`). stdout carries answers only: diagnostics go to
 * stderr.
 *
 * Try it: npm start --silent -- stdio, then type help (or: printf 'add 1 2\nupper hello\n' | npm start --silent -- stdio;
 * without --silent, npm's own banner comes first on stdout)
 */
import { Console, Data, Duration, Effect, Runtime, Stream } from "effect"
import { Chat, ChatClient, Protocol, Terminator } from "effect-asynchat"
import { Command } from "effect/cli"

/** The longest command line. */
export const MAX_LINE = 4096

/** The answer to `help`. */
export const HELP = "commands: add <number>..., upper <text>, lower <text>, help, quit"

/** What one command line asks for: an answer (none for an empty line), and whether to stop after it. */
export interface Answer {
  readonly reply: string | undefined
  readonly quit: boolean
}

const say = (reply: string): Answer => ({ reply, quit: false })

/** The interpreter, pure: `add 1 2` is `3`, an unknown command is an `error: ...` line. */
export const interpret = (line: string): Answer => {
  const [name = "", ...args] = line.trim().split(/\s+/)
  const rest = line.trim().slice(name.length).trim()
  switch (name) {
    case "":
      return { reply: undefined, quit: false }
    case "add": {
      const numbers = args.map(Number)
      if (args.length === 0 || numbers.some((n) => !Number.isFinite(n))) {
        return say(`error: add takes numbers, got ${JSON.stringify(rest)}`)
      }
      return say(String(numbers.reduce((sum, n) => sum + n, 0)))
    }
    case "upper":
      return say(rest.toUpperCase())
    case "lower":
      return say(rest.toLowerCase())
    case "help":
      return say(HELP)
    case "quit":
      return { reply: "bye", quit: true }
    default:
      return say(`error: unknown command ${JSON.stringify(name)} (try help)`)
  }
}

const decoder = new TextDecoder()

/**
 * One answer per line, in order, until `quit` or the end of input (a last line without its newline still counts).
 * A line over {@link MAX_LINE} bytes is answered with an error, then the connection ends with the failure.
 */
export const Commands = Protocol.make(Terminator.lf, (lines) =>
  Stream.runForEachWhile(lines, (frame) => {
    const { quit, reply } = interpret(decoder.decode(frame.bytes))
    return reply === undefined ? Effect.succeed(true) : Effect.as(Chat.push(reply, "\n"), !quit)
  }).pipe(
    Effect.tapError((error) =>
      error.reason._tag === "FrameTooLong" ? Chat.push(`error: line longer than ${MAX_LINE} bytes\n`) : Effect.void
    )
  ))

/** The command ended badly; already said on stderr, so `runMain` only sets the exit code. */
export class StdioFailed extends Data.TaggedError("StdioFailed")<{ readonly message: string }> {
  override readonly [Runtime.errorReported] = false
}

/** Runs {@link Commands} over stdin and stdout until `quit` or end of input. */
export const run = ChatClient.run(
  ChatClient.duplex("stdio", Effect.sync(() => ChatClient.duplexOf(process.stdin, process.stdout))),
  Commands,
  // local input, typed by a person: no idle or per-line deadline
  { maxFrameLength: MAX_LINE, idleTimeout: Duration.infinity, frameTimeout: Duration.infinity }
).pipe(
  Effect.catch((error) =>
    Console.error(`stdio: ${error.message}`).pipe(
      Effect.andThen(Effect.fail(new StdioFailed({ message: error.message })))
    )
  )
)

/** `npm start --silent -- stdio` */
export const command = Command.make("stdio", {}, () => run).pipe(
  Command.withDescription("asyncore's file_dispatcher: a line command interpreter on stdin/stdout")
)
