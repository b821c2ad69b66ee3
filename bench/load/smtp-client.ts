/**
 * The load for the smtp section of `bench/servers.ts`: CONNECTIONS connections that together send MESSAGES
 * messages of SIZE bytes to 127.0.0.1:PORT. Each connection reads the greeting and says EHLO once, then, for as
 * long as messages are left, MAIL FROM, RCPT TO, DATA and the message with its closing dot, each sent after the
 * reply to the one before (not pipelined: CPython's smtpd does not offer PIPELINING), then QUIT. Every reply's
 * code is checked (220, 250, 250, 250, 354, 250, ..., 221). The message is headers and lines of 78 characters
 * (none starting with a dot), SIZE bytes with its CRLFs, sent in one write. Prints one JSON line: messages
 * accepted, bytes, milliseconds. Exits 1 on a wrong reply, a failed or early-closed connection, or after
 * DEADLINE_MS.
 *
 * Run: node bench/load/smtp-client.ts PORT [CONNECTIONS=10] [MESSAGES=1000] [SIZE=10240] [DEADLINE_MS=60000]
 */
import { Buffer } from "node:buffer"
import { connect } from "node:net"
import { performance } from "node:perf_hooks"

const [port, connections = 10, messages = 1000, size = 10_240, deadline = 60_000] = process.argv
  .slice(2)
  .map(Number)
if (!(port > 0) || size < 256) {
  console.error("usage: node bench/load/smtp-client.ts PORT [CONNECTIONS] [MESSAGES] [SIZE] [DEADLINE_MS]")
  process.exit(2)
}

/** The message: headers, then lines of 78 characters and CRLF, the last one cut to make SIZE bytes; then the dot. */
const message = (() => {
  let text = "From: bench@example.com\r\nTo: you@example.com\r\nSubject: smtp-client\r\n\r\n"
  const line = "The quick brown fox jumps over the lazy dog. ".repeat(2).slice(0, 78) + "\r\n"
  while (text.length + line.length + 2 <= size) text += line
  text += "x".repeat(size - text.length - 2) + "\r\n"
  return Buffer.from(text + ".\r\n")
})()

const fail = (message: string): never => {
  console.error(`smtp-client: ${message}`)
  process.exit(1)
}
setTimeout(() => fail(`not done after ${deadline} ms`), deadline).unref()

let taken = 0
let accepted = 0
let open = connections
const start = performance.now()

/** What a connection sends after each reply, and the reply code it expects to that. */
type Step = "greeting" | "ehlo" | "mail" | "rcpt" | "data" | "body" | "quit"
const EXPECTED: Record<Step, number> = {
  greeting: 220,
  ehlo: 250,
  mail: 250,
  rcpt: 250,
  data: 354,
  body: 250,
  quit: 221
}

for (let c = 0; c < connections; c++) {
  let step: Step = "greeting"
  let pending = ""
  const socket = connect({ port, host: "127.0.0.1", noDelay: true })
  /** Sends the next message's MAIL FROM, or QUIT when none is left. */
  const next = () => {
    if (taken < messages) {
      taken++
      step = "mail"
      socket.write("MAIL FROM:<bench@example.com>\r\n")
    } else {
      step = "quit"
      socket.write("QUIT\r\n")
    }
  }
  const replied = (code: number, text: string) => {
    if (code !== EXPECTED[step]) fail(`connection ${c}: ${step} answered ${JSON.stringify(text)}`)
    switch (step) {
      case "greeting":
        step = "ehlo"
        return void socket.write("EHLO bench.example.com\r\n")
      case "ehlo":
        return next()
      case "mail":
        step = "rcpt"
        return void socket.write("RCPT TO:<you@example.com>\r\n")
      case "rcpt":
        step = "data"
        return void socket.write("DATA\r\n")
      case "data":
        step = "body"
        return void socket.write(message)
      case "body":
        accepted++
        return next()
      case "quit":
        socket.end()
        if (--open === 0) {
          if (accepted !== messages) fail(`${accepted} of ${messages} messages accepted`)
          console.log(JSON.stringify({ messages: accepted, bytes: accepted * size, ms: performance.now() - start }))
          process.exit(0)
        }
    }
  }
  socket.setEncoding("latin1")
  socket.on("data", (chunk: string) => {
    pending += chunk
    for (let k = pending.indexOf("\r\n"); k >= 0; k = pending.indexOf("\r\n")) {
      const line = pending.slice(0, k)
      pending = pending.slice(k + 2)
      // "250-..." continues a multiline reply; "250 ..." (or a bare "250") ends it
      if (/^\d{3}-/.test(line)) continue
      if (!/^\d{3}( |$)/.test(line)) fail(`connection ${c}: not a reply: ${JSON.stringify(line)}`)
      replied(Number(line.slice(0, 3)), line)
    }
  })
  socket.on("error", (e) => fail(`connection ${c}: ${e.message}`))
  socket.on("close", () => {
    if (step !== "quit") fail(`connection ${c} closed while waiting for the reply to ${step}`)
  })
}
