/**
 * echo-chat — the ECHO protocol of seed 003 (asynchat's EchoServer / EchoHandler / EchoClient / EchoProducer):
 * the client sends `ECHO <len>\n`, then `<len>` bytes through a producer in 64-byte pieces; the server reads the
 * command line, switches its terminator to that count, pushes the body back through a producer in 64-byte pieces
 * and closes when done; the client reads `<len>` bytes and checks the copy.
 *
 * The server is `AsyncChat.make`, the seed's own style: the count for the body comes from the command line
 * just read, and `setTerminator` inside `foundTerminator` switches to it (applying to bytes already received);
 * the per-connection state says which part comes next, as the seed's `process_data` does. The client is
 * a `Framing.machine`: it knows its one count before it connects, so a pure machine states all it expects (the
 * count, then nothing more) and checks it without a socket.
 *
 * The seed's 64-byte `ac_out_buffer_size` is the producers' piece size; its `ac_in_buffer_size` (the size of one
 * `recv`) has no counterpart: reads are what the transport delivers, and frames do not depend on it.
 *
 * Try it: npm start -- echo-chat (server and client in one process, as in the seed's single asyncore loop), or
 *   npm start -- echo-chat --role server --port 7001, then: npm start -- echo-chat --role client --port 7001
 *   --size 10000 (exits 1 if the copy differs), or by hand: printf 'ECHO 5\nhello' | nc 127.0.0.1 7001.
 *   Add --log-level debug to see every 64-byte piece, as the seed's log does.
 */
import { Console, Data, Effect, Option, Stream } from "effect"
import {
  AsyncChat,
  Chat,
  ChatClient,
  ChatServer,
  Framing,
  Listener,
  Producer,
  Protocol,
  Terminator
} from "effect-asynchat"
import { Command, Flag } from "effect/cli"
import { Buffer } from "node:buffer"
import * as Shared from "./shared.ts"

/** The seed's `ac_in_buffer_size` / `ac_out_buffer_size`: "artificially small, to show partial messages". */
export const BUFFER_SIZE = 64

/** The largest body the server accepts (and the longest command line): a bound asynchat does not have. */
export const MAX_BODY = 1024 * 1024

/** The seed's `lorem.txt`, 701 bytes: its log shows it sent as ten 64-byte pieces and one of 61. */
export const LOREM = [
  "Lorem ipsum dolor sit amet, consectetuer adipiscing elit.",
  "Vivamus eget elit. In posuere mi non risus. Mauris id quam posuere",
  "lectus sollicitudin varius. Praesent at mi. Nunc eu velit. Sed augue",
  "massa, fermentum id, nonummy a, nonummy sit amet, ligula. Curabitur",
  "eros pede, egestas at, ultricies ac, pellentesque eu, tellus. ",
  "",
  "Sed sed odio sed mi luctus mollis. Integer et nulla ac augue convallis",
  "accumsan. Ut felis. Donec lectus sapien, elementum nec, condimentum ac,",
  "interdum non, tellus. Aenean viverra, mauris vehicula semper porttitor,",
  "ipsum odio consectetuer lorem, ac imperdiet eros odio a sapien. Nulla",
  "mauris tellus, aliquam non, egestas a, nonummy et, erat. Vivamus",
  "sagittis porttitor eros.",
  ""
].join("\n")

const decoder = new TextDecoder()

/** A producer of `data` in 64-byte pieces, each logged at debug level as the seed's `EchoProducer.more()` is. */
const echoProducer = (who: string, data: Uint8Array) =>
  Producer.simple(data, BUFFER_SIZE).pipe(
    Stream.tap((piece) => Effect.logDebug(`${who}: more() -> (${piece.length} bytes)`))
  )

// ---------------------------------------------------------------------------------------------------------------
// The server: EchoHandler

/** A command line that is not `ECHO <len>`: the seed's handler raised (and asyncore closed the channel). */
export class BadCommand extends Data.TaggedError("BadCommand")<{ readonly command: string }> {
  override get message() {
    return `expected "ECHO <length>", got ${JSON.stringify(this.command)}`
  }
}

/** The body length of an `ECHO <len>` command line, if it is one. */
export const parseCommand = (line: string): number | undefined => {
  const length = /^ECHO (\d{1,15})$/.exec(line.trim())?.[1]
  return length === undefined ? undefined : Number(length)
}

/** What the seed's EchoHandler keeps on `self`: which method `found_terminator` calls next. */
interface EchoHandlerState {
  processData: "command" | "message" | "done"
}

/**
 * The seed's EchoHandler. A command line (`\n`) sets the count; the body it counts is pushed back in 64-byte
 * pieces and the connection closes when they are written. Bytes after the body are ignored (`none`), as asynchat
 * ignores them once the count it decremented in place reaches 0.
 */
export const EchoHandler = AsyncChat.make({
  terminator: Terminator.lf,
  initialState: (): EchoHandlerState => ({ processData: "command" }),
  foundTerminator: Effect.fn("EchoHandler.foundTerminator")(function*(frame: Framing.Frame, self: EchoHandlerState) {
    // asynchat calls found_terminator only for a terminated frame; the rest went to collect_incoming_data
    if (!frame.terminated) return
    const chat = yield* Chat.Chat
    const framing = yield* AsyncChat.AsyncChat
    switch (self.processData) {
      case "command": {
        // _process_command
        const command = decoder.decode(frame.bytes)
        const length = parseCommand(command)
        if (length === undefined) return yield* new BadCommand({ command })
        yield* Effect.logDebug(`EchoHandler: _process_command() ${JSON.stringify(command)}`)
        yield* framing.setTerminator(Terminator.length(length))
        self.processData = "message"
        return
      }
      case "message": {
        // _process_message
        yield* Effect.logDebug(`EchoHandler: _process_message() echoing ${frame.bytes.length} bytes`)
        yield* framing.setTerminator(Terminator.none)
        self.processData = "done"
        yield* chat.pushStream(echoProducer("EchoHandler", frame.bytes))
        return yield* chat.closeWhenDone
      }
      case "done":
        return
    }
  })
})

/** The server's limits: bodies up to {@link MAX_BODY}; 10 seconds for the command line, then for the body. */
export const serverOptions: ChatServer.Options = { maxFrameLength: MAX_BODY, frameTimeout: "10 seconds" }

// ---------------------------------------------------------------------------------------------------------------
// The client: EchoClient

/** The echo was not a copy of what was sent. */
export class CopyMismatch extends Data.TaggedError("CopyMismatch")<{ readonly message: string }> {}

/**
 * What the client expects back: exactly `length` bytes, then the server's end of input. Fewer bytes before the
 * end, or any byte after them, fail.
 */
export const EchoReply = (length: number) =>
  Framing.machine<"copy" | "done", Uint8Array, CopyMismatch>({
    initial: "copy",
    terminator: (state) => state === "copy" ? Terminator.length(length) : Terminator.none,
    step: (state, frame) => {
      if (state === "done") {
        return Framing.fail(new CopyMismatch({ message: `${frame.bytes.length} more bytes after the copy` }))
      }
      return frame.terminated
        ? Framing.next("done", frame.bytes)
        : Framing.fail(
          new CopyMismatch({ message: `the server closed after ${frame.bytes.length} of ${length} bytes` })
        )
    },
    end: (state) =>
      state === "copy"
        ? Framing.fail(new CopyMismatch({ message: `the server closed after 0 of ${length} bytes` }))
        : Framing.next(state)
  })

/** Where two byte strings first differ, or -1. */
const firstDifference = (a: Uint8Array, b: Uint8Array): number => {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return i
  return a.length === b.length ? -1 : Math.min(a.length, b.length)
}

/**
 * The seed's EchoClient for one message: sends the command and the body (in 64-byte pieces), reads the copy
 * until the server closes, and returns it, failing with {@link CopyMismatch} unless it is exact.
 */
export const EchoClient = (message: Uint8Array) =>
  Protocol.make(EchoReply(message.length), (replies) =>
    Effect.gen(function*() {
      yield* Chat.push(`ECHO ${message.length}\n`)
      yield* Chat.pushStream(echoProducer("EchoProducer", message))
      // the machine lets exactly one copy through, then waits for the server to close
      const [copy] = yield* Stream.runCollect(replies)
      const at = firstDifference(copy, message)
      if (at >= 0) {
        return yield* new CopyMismatch({ message: `the copy differs from the message at byte ${at}` })
      }
      yield* Effect.logDebug(`EchoClient: received a copy of the message (${copy.length} bytes)`)
    }))

/** Runs {@link EchoClient} against `host:port`; the client's frames are as long as the message. */
export const echo = (options: { readonly host: string; readonly port: number; readonly message: Uint8Array }) =>
  ChatClient.run(ChatClient.tcp(options), EchoClient(options.message), {
    maxFrameLength: Math.max(options.message.length, Framing.defaultMaxFrameLength),
    connectTimeout: "5 seconds",
    idleTimeout: "30 seconds"
  })

// ---------------------------------------------------------------------------------------------------------------
// The program

/** The client's body: `--message`, else `--size` bytes of lorem ipsum, else the seed's 701-byte text. */
export const messageOf = (options: { readonly message: Option.Option<string>; readonly size: Option.Option<number> }) =>
  Option.match(options.message, {
    onSome: (text) => Buffer.from(text, "utf8"),
    onNone: () => {
      const lorem = Buffer.from(LOREM, "utf8")
      const size = Option.getOrElse(options.size, () => lorem.length)
      return Buffer.alloc(size, lorem)
    }
  })

export type Role = "both" | "server" | "client"

/** Flags that do not go together. */
export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string }> {}

/** Runs one side, or both in one process with the server on a free port when `--port` is 0. */
export const run = (
  options: Shared.ServerFlags & {
    readonly role: Role
    readonly message: Option.Option<string>
    readonly size: Option.Option<number>
  }
) =>
  Effect.gen(function*() {
    const message = messageOf(options)
    const client = (port: number) =>
      Console.log(`EchoClient: sending ${message.length} bytes to ${options.host}:${port}`).pipe(
        Effect.andThen(echo({ host: options.host, port, message })),
        Effect.andThen(Console.log(`EchoClient: received a copy of the message (${message.length} bytes)`))
      )
    switch (options.role) {
      case "server":
        return yield* Shared.serveTcp(EchoHandler, {
          host: options.host,
          port: options.port,
          proxyProtocol: options.proxyProtocol,
          trustedProxy: options.trustedProxy,
          name: "echo-chat server",
          tryIt: (host, port) => [
            `npm start -- echo-chat --role client --host ${host} --port ${port} --size 10000`,
            `printf 'ECHO 5\\nhello' | nc ${host} ${port}`
          ],
          server: Shared.withLimits(serverOptions, options)
        })
      case "client":
        if (options.port === 0) return yield* new UsageError({ message: "--role client needs the server's --port" })
        return yield* client(options.port)
      case "both":
        // the seed: one loop, the server on a port the kernel picks, the client against it, done when it is
        return yield* Effect.gen(function*() {
          const server = yield* ChatServer.make(EchoHandler, Shared.withLimits(serverOptions, options))
          yield* client(server.address._tag === "Inet" ? server.address.port : options.port)
        }).pipe(Effect.scoped, Effect.provide(Listener.layerTcp({ host: options.host, port: options.port })))
    }
  })

/** `npm start -- echo-chat [--role both|server|client] [--host H] [--port N] [--message TEXT | --size N]` */
export const command = Command.make("echo-chat", {
  ...Shared.serverFlags(0, serverOptions),
  role: Flag.Literals("role", ["both", "server", "client"]).pipe(
    Flag.withDescription("Run the server, the client, or both in one process (default both)"),
    Flag.withDefault("both" as const)
  ),
  message: Flag.String("message").pipe(
    Flag.withDescription("The client's body (default: the seed's 701-byte lorem ipsum text)"),
    Flag.optional
  ),
  size: Flag.Int("size").pipe(
    Flag.withDescription("A body of this many bytes of lorem ipsum instead"),
    Flag.filter((n) => n >= 0 && n <= MAX_BODY, (n) => `--size must be between 0 and ${MAX_BODY}, got ${n}`),
    Flag.optional
  )
}, run).pipe(
  Shared.withTelemetry,
  Command.withDescription("asynchat's ECHO protocol (seed 003): ECHO <len>, then len bytes echoed back")
)
