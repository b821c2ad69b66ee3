/**
 * What the examples share: the `--host` / `--port` flags and a way to serve a protocol on TCP until Ctrl-C
 * (which shuts the server down gracefully).
 */
import { Console, Effect } from "effect"
import { Chat, ChatServer, Listener, type Protocol } from "effect-asynchat"
import { Flag } from "effect/cli"

/** `--host`, default 127.0.0.1: where to listen, or where to connect. */
export const host = Flag.String("host").pipe(
  Flag.withDescription("Address to listen on (servers) or connect to (clients)"),
  Flag.withDefault("127.0.0.1")
)

/** `--port`, with each example's own default. */
export const port = (fallback: number, role: "server" | "client" = "server") =>
  Flag.Int("port").pipe(
    Flag.withDescription(
      role === "server"
        ? `TCP port to listen on (default ${fallback}; 0 picks a free one)`
        : `TCP port to connect to (default ${fallback})`
    ),
    Flag.withDefault(fallback)
  )

/**
 * Serves `protocol` on `host:port` until interrupted, then prints how to try it: `tryIt` gets the bound
 * address (useful with port 0).
 */
export const serveTcp = <E, R>(
  protocol: Protocol.Protocol<E, R>,
  options: {
    readonly host: string
    readonly port: number
    readonly name: string
    readonly tryIt: (host: string, port: number) => ReadonlyArray<string>
    readonly server?: ChatServer.Options | undefined
  }
) =>
  Effect.scoped(Effect.gen(function*() {
    const server = yield* ChatServer.make(protocol, options.server)
    const address = server.address
    const boundPort = address._tag === "Inet" ? address.port : options.port
    yield* Console.log(`${options.name} listening on ${Chat.formatAddress(address)} (Ctrl-C to stop)`)
    for (const line of options.tryIt(options.host, boundPort)) yield* Console.log(`  try: ${line}`)
    return yield* Effect.never
  })).pipe(Effect.provide(Listener.layerTcp({ host: options.host, port: options.port })))
