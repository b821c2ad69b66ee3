/**
 * http-client — the asyncore HTTP client (seed 001): connects, sends `GET <path> HTTP/1.0` with a `Host`
 * header, and writes whatever comes back (status line, headers, body) to stdout as it arrives, byte for byte,
 * until the server closes. `Terminator.none` hands input on as it is read, which is the seed's
 * `print(self.recv(8192))`. Exits 0 when the server has closed; non-zero when it cannot connect, or hears
 * nothing for 30 seconds.
 *
 * Try it: npm start -- http-server --port 8000, then: npm start -- http-client --port 8000 --path /hello
 */
import { Console, Data, Effect, Runtime, type Sink, Stream } from "effect"
import { Chat, ChatClient, Terminator } from "effect-asynchat"
import { Command, Flag } from "effect/cli"
import { Stdio } from "effect/Stdio"
import * as Shared from "./shared.ts"

/** A request target the request line can carry: no space or control character could split it. */
const PATH = /^\/[\x21-\x7e]*$/

/** A `--path` that would not survive the request line. */
export class BadPath extends Data.TaggedError("BadPath")<{ readonly message: string }> {}

/** A failure already explained on stderr: the runtime only sets the exit status (1), without logging it again. */
class Reported extends Data.TaggedError("Reported") {
  override readonly [Runtime.errorReported] = false
}

/** The request the seed sends: HTTP/1.0, so the server answers once and closes. `Host` names a port but 80. */
export const request = (host: string, port: number, path: string): string =>
  `GET ${path} HTTP/1.0\r\nHost: ${port === 80 ? host : Chat.formatAddress({ _tag: "Inet", host, port })}\r\n\r\n`

/** Fetches `path` from `host:port` and writes the raw response to `out` as it arrives. */
export const fetch = <E, R>(
  options: { readonly host: string; readonly port: number; readonly path: string },
  out: Sink.Sink<unknown, Uint8Array, never, E, R>
) =>
  Effect.scoped(Effect.gen(function*() {
    if (!PATH.test(options.path)) {
      return yield* new BadPath({ message: `--path must start with / and be printable ASCII: ${options.path}` })
    }
    const client = yield* ChatClient.connect(ChatClient.tcp({ host: options.host, port: options.port }), {
      terminator: Terminator.none,
      connectTimeout: "5 seconds",
      idleTimeout: "30 seconds"
    })
    yield* client.chat.push(request(options.host, options.port, options.path))
    // The input ends when the server closes: that is the end of the response.
    yield* Stream.run(Stream.map(client.input, (frame) => frame.bytes), out)
  }))

/**
 * Runs the client against `host:port`, writing the response to standard output; a failure is one line on
 * standard error (never mixed into the response) and exit status 1.
 */
export const run = (options: { readonly host: string; readonly port: number; readonly path: string }) =>
  Effect.flatMap(Stdio, (stdio) => fetch(options, stdio.stdout())).pipe(
    Effect.catch((error) =>
      Console.error(`http-client: ${error.message}`).pipe(Effect.andThen(Effect.fail(new Reported())))
    )
  )

const path = Flag.String("path").pipe(Flag.withDescription("The path to GET (default /)"), Flag.withDefault("/"))

/** `npm start -- http-client [--host H] [--port N] [--path P]` */
export const command = Command.make("http-client", { host: Shared.host, port: Shared.port(8000, "client"), path }, run)
  .pipe(
    Command.withDescription("asyncore's HTTP client: GET a path over HTTP/1.0 and print the raw response")
  )
