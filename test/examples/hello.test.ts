/**
 * The hello example end to end: curl and a raw `node:net` client over TCP on 127.0.0.1, and once through
 * `npm start`, stopped with Ctrl-C's SIGINT.
 */
import { describe, expect, it } from "@effect/vitest"
import { Effect, Schedule } from "effect"
import { Hello, serverOptions } from "../../examples/hello.ts"
import { curl } from "../tools.ts"
import { isListening, rawExchange, runCurl, startJob, withServer } from "./http-helpers.ts"

const curlTest = curl.available ? it.live : it.live.skip

/** The server options `npm start -- hello` runs with. */
const options = serverOptions

const page = (greeting: string) =>
  "HTTP/1.0 200 OK\r\n" +
  "Content-Type: text/html\r\n" +
  "\r\n" +
  `<html>\r\n<body>\r\nHello ${greeting}! \r\n</body>\r\n</html>\r\n`

const badRequest = "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\n\r\nbad request line\r\n"

describe("hello with curl", () => {
  // The answer has no Content-Length: curl reads it to the server's close, and would time out (exit 28) without.
  curlTest(
    `GET /kongxx answers "Hello kongxx!" in an HTML page, then closes${curl.skipReason}`,
    () =>
      withServer(Hello, options, (port) =>
        Effect.gen(function*() {
          curl.require()
          const result = yield* runCurl("-i", `http://127.0.0.1:${port}/kongxx`)
          expect(result.stderr).toBe("")
          expect(result.code).toBe(0)
          expect(result.stdout.toString("latin1")).toBe(page("kongxx"))
        }))
  )

  curlTest(
    `the name is URL-decoded and HTML-escaped${curl.skipReason}`,
    () =>
      withServer(Hello, options, (port) =>
        Effect.gen(function*() {
          curl.require()
          const result = yield* runCurl(`http://127.0.0.1:${port}/%3Cb%3Ekong%20xx%3C%2Fb%3E`)
          expect(result.stdout.toString("latin1")).toBe(
            "<html>\r\n<body>\r\nHello &lt;b&gt;kong xx&lt;/b&gt;! \r\n</body>\r\n</html>\r\n"
          )
        }))
  )

  curlTest(
    `a malformed request line gets 400, and the server goes on${curl.skipReason}`,
    () =>
      withServer(Hello, options, (port) =>
        Effect.gen(function*() {
          curl.require()
          // A method with a space in it makes four words of the request line.
          const malformed = yield* runCurl("-i", "-X", "GE T", `http://127.0.0.1:${port}/kongxx`)
          expect(malformed.code).toBe(0)
          expect(malformed.stdout.toString("latin1")).toBe(badRequest)
          const after = yield* runCurl("-i", `http://127.0.0.1:${port}/again`)
          expect(after.stdout.toString("latin1")).toBe(page("again"))
        }))
  )
})

describe("hello with a raw TCP client", () => {
  it.live("the server closes the connection after the answer, while the client still has its side open", () =>
    withServer(Hello, options, (port) =>
      Effect.gen(function*() {
        expect(yield* rawExchange(port, ["GET /kongxx HTTP/1.0\r\nHost: x\r\n\r\n"])).toEqual({
          received: page("kongxx"),
          serverClosed: true
        })
      })))

  it.live("a malformed request line gets 400 and a close", () =>
    withServer(Hello, options, (port) =>
      Effect.gen(function*() {
        expect(yield* rawExchange(port, ["GARBAGE\r\n\r\n"])).toEqual({ received: badRequest, serverClosed: true })
      })))
})

describe("hello through npm start", () => {
  curlTest(
    `npm start -- hello --port 0 serves on the port it prints, and stops at Ctrl-C${curl.skipReason}`,
    () =>
      Effect.scoped(Effect.gen(function*() {
        curl.require()
        const job = yield* startJob("npm", ["start", "--", "hello", "--port", "0"])
        const [, port] = yield* job.waitFor(
          /hello listening on 127\.0\.0\.1:(\d+) \(Ctrl-C to stop\)\n {2}try: curl http:\/\/127\.0\.0\.1:\1\/kongxx\n/
        )
        const result = yield* runCurl("-i", `http://127.0.0.1:${port}/npm`)
        expect(result.stdout.toString("latin1")).toBe(page("npm"))

        // Ctrl-C signals the whole foreground group: npm, its shell, and the server.
        const started = Date.now()
        const exit = yield* job.signal("SIGINT")
        expect(exit.code === 0 || exit.signal === "SIGINT").toBe(true)
        // npm may leave before the server does: the server is gone once its port refuses connections.
        yield* isListening(Number(port)).pipe(
          Effect.repeat({ until: (listening) => !listening, schedule: Schedule.spaced("20 millis") }),
          Effect.timeoutOrElse({
            duration: "2 seconds",
            orElse: () => Effect.die(new Error("the server still listens 2 seconds after SIGINT"))
          })
        )
        expect(Date.now() - started).toBeLessThan(2000)
      }))
  )
})
