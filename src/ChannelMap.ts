/**
 * A channel map across processes and machines: every node (a process running a `ChatServer`) joins the same Redis
 * over pub/sub, as Socket.IO's Redis adapter scales its rooms.
 *
 * - `broadcast` delivers to this node's connections at once (but `except`) and publishes to every other node,
 *   which delivers to all of its own: each connection gets a line exactly once, in the order its sender sent
 *   them (one connection publishes, one subscribes, per node).
 * - Presence: `join(id, meta)` records a connection and what the app says of it (a nick) in this node's Redis
 *   hash, removed when the joining scope closes and, with the whole hash, when the node stops. The hash expires
 *   `presenceTtl` after the last heartbeat (every third of it), so a crashed node's entries go by themselves.
 *   `members` lists every node's.
 * - `sendTo(node, id, data)` reaches one connection on any node (its node's own channel).
 * - Redis going away is not this node's failure: local delivery goes on; the loss is logged once, as a
 *   `ChannelMapError`; the map reconnects by `reconnect` (a `Schedule`, started afresh at each loss) and then
 *   writes its presence again. Nothing is queued without bound: up to `maxPending` commands wait for a slow
 *   Redis (more are dropped), those waiting at a loss are dropped, and while disconnected every remote message
 *   is dropped; dropped messages are counted in `stats` (the one command in flight at a loss may or may not
 *   have reached Redis, and is not counted).
 *
 * The Redis client is `@effect/platform-node`'s `NodeRedis` (node-redis, the `redis` package), loaded when a map
 * is made, so that importing this library does not load it.
 *
 * @since 0.1.0
 */
import { Context, Data, Duration, Effect, Fiber, Layer, Queue, References, Schedule, type Scope } from "effect"
import * as Redis from "effect/persistence/Redis"
import { Buffer } from "node:buffer"
import type { ChatServerShape } from "./ChatServer.ts"

/**
 * Why the map could not reach the other nodes: `Disconnected` (asked while Redis is away), `ConnectionLost`
 * (logged once when Redis goes), `CommandFailed` (Redis answered a command with an error, or not within `connectTimeout`).
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChannelMap } from "effect-asynchat"
 *
 * const everyone = (map: ChannelMap.ChannelMapShape) =>
 *   map.members.pipe(Effect.catchTag("ChannelMapError", () => map.localMembers))
 * ```
 *
 * @category errors
 * @since 0.1.0
 */
export class ChannelMapError extends Data.TaggedError("ChannelMapError")<{
  readonly reason: "Disconnected" | "ConnectionLost" | "CommandFailed"
  readonly cause?: unknown
}> {
  override get message(): string {
    const cause = this.cause instanceof Error ? `: ${this.cause.message}` : ""
    return `channel map: ${this.reason}${cause}`
  }
}

/**
 * A connection somewhere: its node, its id there, and what the app said of it (`join`'s `meta`).
 *
 * @example
 * ```ts
 * import type { ChannelMap } from "effect-asynchat"
 *
 * const show = (m: ChannelMap.Member) => `${m.meta} (${m.node}#${m.id})`
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Member {
  readonly node: string
  readonly id: number
  readonly meta: string
}

/**
 * How a map is doing: whether Redis is reachable now, the remote messages dropped so far, and how many times it
 * has (re)connected.
 *
 * @example
 * ```ts
 * import type { ChannelMap } from "effect-asynchat"
 *
 * const line = (s: ChannelMap.Stats) => `redis ${s.connected ? "up" : "down"}, ${s.dropped} dropped`
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Stats {
  readonly connected: boolean
  readonly dropped: number
  readonly connects: number
}

/**
 * Where the map connects, who this node is, and how it copes.
 *
 * @example
 * ```ts
 * import { Schedule } from "effect"
 * import type { ChannelMap } from "effect-asynchat"
 *
 * const options: ChannelMap.Options = {
 *   url: "redis://127.0.0.1:6379",
 *   nodeId: "chat-1",
 *   reconnect: Schedule.spaced("1 second"),
 *   presenceTtl: "30 seconds"
 * }
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface Options {
  /** `redis://host:port` (node-redis's URL: `rediss://`, a user and password, a database number). */
  readonly url: string
  /** This node's id, unique among the nodes sharing the Redis (a host and pid, say). */
  readonly nodeId: string
  /** The channels' and keys' prefix (default `"asynchat"`): maps with different prefixes do not meet. */
  readonly prefix?: string | undefined
  /** The delays between attempts to reach Redis after a loss (default exponential from 100 ms, at most 5 s). */
  readonly reconnect?: Schedule.Schedule<unknown, ChannelMapError> | undefined
  /** How long a node's presence outlives its last heartbeat (default 30 seconds; heartbeats every third). */
  readonly presenceTtl?: Duration.Input | undefined
  /** Commands waiting for Redis at most (default 10,000); more are dropped and counted. */
  readonly maxPending?: number | undefined
  /** How long a connection attempt, a heartbeat or `members` may take (default 5 seconds): past it Redis is lost. */
  readonly connectTimeout?: Duration.Input | undefined
}

/**
 * A channel map across nodes.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { Chat, ChannelMap } from "effect-asynchat"
 *
 * // in a handler: say hello to every connection of every node but oneself
 * const hello = Effect.gen(function*() {
 *   const chat = yield* Chat.Chat
 *   const map = yield* ChannelMap.ChannelMap
 *   yield* map.broadcast(`* #${chat.id} joined\n`, { except: chat.id })
 * })
 * ```
 *
 * @category models
 * @since 0.1.0
 */
export interface ChannelMapShape {
  readonly nodeId: string
  /**
   * Serves `server`'s connections, for the current scope: messages from other nodes reach them (before, or with
   * no server, they are dropped). A node has one server at a time.
   */
  readonly attach: (server: ChatServerShape) => Effect.Effect<void, never, Scope.Scope>
  /** Queues `data` on every connection of this node but `except`, and publishes it to every other node. */
  readonly broadcast: (
    data: Uint8Array | string,
    options?: { readonly except?: number | undefined }
  ) => Effect.Effect<void>
  /** Queues `data` on connection `id` of node `node` (this one or another); dropped if there is none. */
  readonly sendTo: (node: string, id: number, data: Uint8Array | string) => Effect.Effect<void>
  /** Records connection `id` with `meta` (a nick) until the scope closes; again with the same id, updates it. */
  readonly join: (id: number, meta: string) => Effect.Effect<void, never, Scope.Scope>
  /** This node's joined connections, oldest first. */
  readonly localMembers: Effect.Effect<ReadonlyArray<Member>>
  /** Every node's joined connections: this node's first, then the others' by node id, each by connection id. */
  readonly members: Effect.Effect<ReadonlyArray<Member>, ChannelMapError>
  readonly stats: Effect.Effect<Stats>
}

/**
 * The channel map in context.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChannelMap } from "effect-asynchat"
 *
 * const who = Effect.flatMap(ChannelMap.ChannelMap, (map) => map.members)
 * ```
 *
 * @category services
 * @since 0.1.0
 */
export class ChannelMap extends Context.Service<ChannelMap, ChannelMapShape>()("effect-asynchat/ChannelMap") {}

/** A remote message: from which node, to which connection (none: all), the data (base64 when binary). */
interface Wire {
  readonly f: string
  readonly t?: number | undefined
  readonly d: string
  readonly b?: 1
}

const encode = (from: string, data: Uint8Array | string, to?: number): string => {
  const wire: Wire = typeof data === "string"
    ? { f: from, t: to, d: data }
    : { f: from, t: to, d: Buffer.from(data).toString("base64"), b: 1 }
  return JSON.stringify(wire)
}

const decode = (
  text: string
): { readonly from: string; readonly to?: number | undefined; readonly data: string | Uint8Array } => {
  const wire = JSON.parse(text) as Wire
  return { from: wire.f, to: wire.t, data: wire.b === 1 ? Buffer.from(wire.d, "base64") : wire.d }
}

const decodeOrUndefined = (text: string): ReturnType<typeof decode> | undefined => {
  try {
    const message = decode(text)
    return typeof message.from === "string" && typeof message.data !== "undefined" ? message : undefined
  } catch {
    return undefined
  }
}

/** HGETALL's reply: a flat array under RESP2, a map (node-redis gives an object or a `Map`) under RESP3. */
type HashReply = ReadonlyArray<unknown> | Map<unknown, unknown> | Record<string, unknown> | null

const entriesOf = (reply: HashReply): Array<readonly [string, string]> => {
  if (reply === null) return []
  if (Array.isArray(reply)) {
    const entries: Array<readonly [string, string]> = []
    for (let i = 0; i + 1 < reply.length; i += 2) entries.push([String(reply[i]), String(reply[i + 1])])
    return entries
  }
  const pairs = reply instanceof Map ? [...reply] : Object.entries(reply)
  return pairs.map(([key, value]) => [String(key), String(value)] as const)
}

const memberOf = (node: string, id: string, meta: string): Member => ({ node, id: Number(id), meta })

/** A command for Redis; `message` ones are counted when dropped (presence is written again on reconnecting). */
interface Pending {
  readonly args: ReadonlyArray<string>
  readonly message: boolean
}

const defaultReconnect: Schedule.Schedule<unknown, ChannelMapError> = Schedule.min([
  Schedule.exponential("100 millis"),
  Schedule.spaced("5 seconds")
])

/**
 * Makes a map for the current scope and starts connecting (it does not wait for Redis: until it is there, the
 * map is disconnected). Closing the scope removes this node's presence, if Redis is there, and disconnects.
 *
 * @example
 * ```ts
 * import { Effect } from "effect"
 * import { ChannelMap, ChatServer, Protocol, Terminator } from "effect-asynchat"
 *
 * const Room = Protocol.forEach(Terminator.lf, (line) =>
 *   Effect.flatMap(ChannelMap.ChannelMap, (map) => map.broadcast(line.bytes)))
 * const program = Effect.gen(function*() {
 *   const map = yield* ChannelMap.make({ url: "redis://127.0.0.1:6379", nodeId: "a" })
 *   const server = yield* ChatServer.make(Room).pipe(Effect.provideService(ChannelMap.ChannelMap, map))
 *   yield* map.attach(server)
 * })
 * ```
 *
 * @category constructors
 * @since 0.1.0
 */
export const make: (options: Options) => Effect.Effect<ChannelMapShape, never, Scope.Scope> = Effect.fnUntraced(
  function*(options: Options) {
    const NodeRedis = yield* Effect.promise(() => import("@effect/platform-node/NodeRedis"))
    const prefix = options.prefix ?? "asynchat"
    const nodeId = options.nodeId
    const allChannel = `${prefix}:all`
    const nodeChannel = (node: string) => `${prefix}:node:${node}`
    const nodesKey = `${prefix}:nodes`
    const presenceKey = (node: string) => `${prefix}:presence:${node}`
    const ttl = Duration.fromInputUnsafe(options.presenceTtl ?? "30 seconds")
    const ttlMillis = String(Math.max(1, Math.round(Duration.toMillis(ttl))))
    const reconnect = options.reconnect ?? defaultReconnect
    const connectTimeout = Math.round(
      Duration.toMillis(Duration.fromInputUnsafe(options.connectTimeout ?? "5 seconds"))
    )

    const local = new Map<number, string>()
    let server: ChatServerShape | undefined
    let redis: Redis.Redis["Service"] | undefined
    let dropped = 0
    let refusals = 0
    // logged at the 1st, 2nd, 4th, 8th... refusal: a Redis refusing everything is said, not a log line per command
    const refused = (args: ReadonlyArray<string>, message: boolean, error: unknown): Effect.Effect<void> => {
      if (message) dropped++
      refusals++
      return (refusals & (refusals - 1)) === 0
        ? Effect.logWarning(`channel map ${nodeId}: Redis refused ${args[0]} (${refusals} refused so far)`, error)
        : Effect.void
    }
    let connects = 0
    const pending = yield* Queue.dropping<Pending>(options.maxPending ?? 10_000)

    const enqueue = (args: ReadonlyArray<string>, message: boolean) => {
      if (redis === undefined) {
        if (message) dropped++
        return
      }
      if (!Queue.offerUnsafe(pending, { args, message }) && message) dropped++
    }

    /** What brings Redis up to date with this node's presence: all of it, again. */
    const presenceNow = (): Array<ReadonlyArray<string>> => {
      const key = presenceKey(nodeId)
      const fields = [...local].flatMap(([id, meta]) => [String(id), meta])
      return [
        ["DEL", key],
        ...(fields.length > 0 ? [["HSET", key, ...fields], ["PEXPIRE", key, ttlMillis]] : []),
        ["SADD", nodesKey, nodeId]
      ]
    }

    const deliver = (text: string) =>
      Effect.suspend(() => {
        const message = decodeOrUndefined(text)
        // another program's message on our channel is not ours to deliver
        if (message === undefined) return Effect.void
        if (message.from === nodeId || server === undefined) return Effect.void
        if (message.to === undefined) return server.broadcast(message.data)
        return Effect.flatMap(
          server.get(message.to),
          (chat) => chat._tag === "Some" ? chat.value.offer(message.data) : Effect.void
        )
      })

    const listen = (queue: Queue.Dequeue<Redis.RedisMessage, Redis.RedisError>) =>
      Effect.forever(Effect.flatMap(Queue.take(queue), (message) => deliver(message.message)))

    /**
     * One connection to Redis: connect and subscribe (failing if it cannot), then serve until Redis goes, which
     * fails it with what went wrong.
     */
    const session = Effect.gen(function*() {
      const context = yield* Layer.build(NodeRedis.layer({
        url: options.url,
        // the map reconnects by its own Schedule; node-redis's own attempts would hide the loss
        socket: { reconnectStrategy: false, connectTimeout },
        disableOfflineQueue: true
      })).pipe(
        // node-redis's client logs a warning per socket error: the map logs a loss once itself
        Effect.provideService(References.MinimumLogLevel, "Error")
      )
      // Destroyed before NodeRedis closes it: `close()` waits for the replies of commands in flight, which a dead
      // socket never sends (it would hang this session's end for good); the map has nothing left to flush.
      const nodeClient = Context.get(context, NodeRedis.NodeRedis).client
      yield* Effect.addFinalizer(() =>
        Effect.sync(() => {
          if (nodeClient.isOpen) nodeClient.destroy()
        })
      )
      const client = Context.get(context, Redis.Redis)
      const broadcasts = yield* client.subscribe(allChannel)
      const direct = yield* client.subscribe(nodeChannel(nodeId))
      // A command Redis refuses (OOM under noeviction, READONLY after a failover, NOPERM) leaves the connection up:
      // it is counted and logged now and then, and the session goes on; only a lost connection ends it.
      const send = (args: ReadonlyArray<string>, message: boolean) =>
        client.send(args[0], ...args.slice(1)).pipe(
          Effect.catch((error) => nodeClient.isReady ? refused(args, message, error) : Effect.fail(error))
        )
      // taken and connected at once: a `join` after this snapshot is queued behind it
      const resync = presenceNow()
      redis = client
      connects++
      yield* Effect.logInfo(`channel map ${nodeId}: connected to Redis at ${options.url}`)
      yield* Effect.forEach(resync, (args) => send(args, false), { discard: true })
      // one at a time: at a loss, one command at most is in flight, neither known sent nor counted as dropped
      const publisher = Effect.forever(
        Effect.flatMap(Queue.take(pending), (command) => send(command.args, command.message))
      )
      const heartbeat = Effect.forever(Effect.andThen(
        Effect.sleep(Duration.divideUnsafe(ttl, 3)),
        Effect.forEach(
          [["SADD", nodesKey, nodeId], ["PEXPIRE", presenceKey(nodeId), ttlMillis]],
          (args) => send(args, false),
          {
            discard: true
          }
        ).pipe(
          // a Redis that went silent (a partition: no reset, no error) is lost too, before our presence expires
          Effect.timeout(connectTimeout)
        )
      ))
      return yield* Effect.raceAllFirst([publisher, heartbeat, listen(broadcasts), listen(direct)])
    }).pipe(
      Effect.mapError((cause) => new ChannelMapError({ reason: "ConnectionLost", cause })),
      Effect.ensuring(Effect.gen(function*() {
        if (redis === undefined) return
        redis = undefined
        // what was waiting for the lost connection is dropped, not kept for the next one
        const lost = yield* Queue.clear(pending)
        dropped += lost.filter((command) => command.message).length
      })),
      Effect.scoped
    )

    // Connects, and again after a loss by `reconnect` (started afresh once connected); logs each loss once.
    const supervise = Effect.gen(function*() {
      let step = yield* Schedule.toStepWithSleep(reconnect)
      let logged = false
      for (;;) {
        const before = connects
        const error = yield* Effect.flip(session)
        if (connects !== before) {
          step = yield* Schedule.toStepWithSleep(reconnect)
          logged = false
        }
        if (!logged) {
          logged = true
          yield* Effect.logWarning(`channel map ${nodeId}: Redis at ${options.url} is unreachable; reconnecting`, error)
        }
        yield* step(error)
      }
    }).pipe(
      // the schedule's end is the only failure left
      Effect.catch(() => Effect.logError(`channel map ${nodeId}: the reconnect schedule ended; local only now`)),
      Effect.annotateLogs({ channelMap: nodeId })
    )
    const supervisor = yield* Effect.forkScoped(supervise)

    // Last in, first out: presence goes (while Redis may still be there), then the connection.
    yield* Effect.addFinalizer(() =>
      Effect.gen(function*() {
        const client = redis
        redis = undefined
        if (client !== undefined) {
          yield* Effect.forEach(
            [["DEL", presenceKey(nodeId)], ["SREM", nodesKey, nodeId]],
            (args) => client.send(args[0], ...args.slice(1)),
            { discard: true }
          ).pipe(Effect.timeoutOption("1 second"), Effect.ignore)
        }
        yield* Fiber.interrupt(supervisor)
      })
    )

    const localMembers = Effect.sync(() => [...local].map(([id, meta]) => ({ node: nodeId, id, meta })))

    const self: ChannelMapShape = {
      nodeId,
      attach: (attached) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            server = attached
          }),
          () =>
            Effect.sync(() => {
              if (server === attached) server = undefined
            })
        ),
      broadcast: (data, broadcastOptions) =>
        Effect.suspend(() => {
          enqueue(["PUBLISH", allChannel, encode(nodeId, data)], true)
          return server === undefined ? Effect.void : server.broadcast(data, broadcastOptions)
        }),
      sendTo: (node, id, data) =>
        Effect.suspend(() => {
          if (node !== nodeId) {
            enqueue(["PUBLISH", nodeChannel(node), encode(nodeId, data, id)], true)
            return Effect.void
          }
          if (server === undefined) return Effect.void
          return Effect.flatMap(
            server.get(id),
            (chat) => chat._tag === "Some" ? Effect.asVoid(chat.value.offer(data)) : Effect.void
          )
        }),
      join: (id, meta) =>
        Effect.acquireRelease(
          Effect.sync(() => {
            local.set(id, meta)
            enqueue(["HSET", presenceKey(nodeId), String(id), meta], false)
            enqueue(["PEXPIRE", presenceKey(nodeId), ttlMillis], false)
            // `members` forgets a node with no entries: one with a connection again is listed again at once
            enqueue(["SADD", nodesKey, nodeId], false)
          }),
          () =>
            Effect.sync(() => {
              local.delete(id)
              enqueue(["HDEL", presenceKey(nodeId), String(id)], false)
            })
        ),
      localMembers,
      members: Effect.gen(function*() {
        const client = redis
        if (client === undefined) return yield* new ChannelMapError({ reason: "Disconnected" })
        const fail = (cause: Redis.RedisError) => new ChannelMapError({ reason: "CommandFailed", cause })
        const nodes = Array.from(yield* client.send<Iterable<string>>("SMEMBERS", nodesKey).pipe(Effect.mapError(fail)))
          .map(String)
          .filter((node) => node !== nodeId)
          .toSorted()
        const others = yield* Effect.forEach(nodes, (node) =>
          client.send<HashReply>("HGETALL", presenceKey(node)).pipe(
            Effect.mapError(fail),
            Effect.flatMap((reply) => {
              const entries = entriesOf(reply)
              // a node without entries (expired: crashed, or none joined) leaves the set, which would otherwise
              // keep every crashed node's id; a live one is put back by its next join or heartbeat
              const forget = entries.length === 0
                ? Effect.ignore(client.send("SREM", nodesKey, node))
                : Effect.void
              return Effect.as(
                forget,
                entries.map(([id, meta]) => memberOf(node, id, meta)).toSorted((a, b) => a.id - b.id)
              )
            })
          ), { concurrency: "unbounded" })
        return [...yield* localMembers, ...others.flat()]
      }).pipe(
        // a silent Redis answers with an error rather than never
        Effect.timeoutOrElse({
          duration: connectTimeout,
          orElse: () => Effect.fail(new ChannelMapError({ reason: "CommandFailed", cause: new Error("timed out") }))
        })
      ),
      stats: Effect.sync(() => ({ connected: redis !== undefined, dropped, connects }))
    }
    return ChannelMap.of(self)
  },
  Effect.annotateLogs({ module: "ChannelMap" })
)

/**
 * The map as a Layer: made with the Layer's scope (see `make`); a server joins it with `attach`.
 *
 * @example
 * ```ts
 * import { ChannelMap } from "effect-asynchat"
 *
 * const MapLive = ChannelMap.layer({ url: "redis://127.0.0.1:6379", nodeId: `chat-${process.pid}` })
 * ```
 *
 * @category layers
 * @since 0.1.0
 */
export const layer = (options: Options): Layer.Layer<ChannelMap> => Layer.effect(ChannelMap, make(options))
