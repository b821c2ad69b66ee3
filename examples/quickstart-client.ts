/**
 * The README's client: sends each argument as a line to the quickstart server and prints the answers.
 *
 * Try it: npx node --conditions=@effect-asynchat/source examples/quickstart-client.ts 7000 hello world QUIT
 */
import { NodeRuntime } from "@effect/platform-node"
import { Console, Effect, Schedule, Stream } from "effect"
import { ChatClient, Terminator } from "effect-asynchat"

const [port = "7000", ...words] = process.argv.slice(2)

const program = Effect.gen(function*() {
  const client = yield* ChatClient.connect(ChatClient.tcp({ host: "127.0.0.1", port: Number(port) }), {
    terminator: Terminator.lf,
    connectTimeout: "2 seconds",
    retry: Schedule.spaced("200 millis").pipe(Schedule.upTo({ times: 10 }))
  })
  yield* client.chat.push(...words.map((word) => `${word}\n`))
  yield* client.input.pipe(
    Stream.take(words.length),
    Stream.runForEach((answer) => Console.log(new TextDecoder().decode(answer.bytes)))
  )
})

program.pipe(Effect.scoped, NodeRuntime.runMain)
