/**
 * The smtp section of `bench/servers.ts`: examples/smtp.ts against CPython's smtpd (its DebuggingServer), 10
 * connections that together send 1,000 messages of 10 KiB, one command at a time (bench/load/smtp-client.ts).
 * Both servers print every message they receive, as DebuggingServer does; both have their stdout on /dev/null,
 * so each pays for formatting and writing the message, not for a terminal.
 */
import { execFileSync } from "node:child_process"
import { addRow, alternate } from "../harness/measure.ts"
import { needExample, onPath } from "../harness/prerequisites.ts"
import { NODE, ours, runLoad, type Server, withServers, withStdoutDiscarded } from "../harness/processes.ts"
import { listCommands, skipped } from "../harness/results.ts"

const SMTP = { connections: 10, messages: 1000, size: 10 * 1024 }
// smtpd spends about 1 ms a message, so one run of 1,000 is about 1 s of its CPU: each measurement is 3 runs
const SMTP_RUNS = 3

const hasSmtpd = (): boolean => {
  if (!onPath("python3")) return false
  try {
    execFileSync("python3", ["-W", "ignore", "-c", "import smtpd"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const client = (messages: number) => [
  NODE,
  "bench/load/smtp-client.ts",
  "PORT",
  ...[SMTP.connections, messages, SMTP.size, 60_000].map(String)
]

/** Messages accepted in one client run of `messages` against `server`, every one of them. */
const run = async (server: Server, messages: number) => {
  const out = await runLoad(server, client(messages), 90_000)
  const result = JSON.parse(out.trim().split("\n").at(-1) ?? "{}") as { messages?: number }
  if (result.messages !== messages) throw new Error(`smtp-client against ${server.name}:\n${out}`)
  return result.messages
}

export const measure = async () => {
  const { connections, messages, size } = SMTP
  console.log(`\nsmtp: examples/smtp.ts vs CPython's smtpd, ${connections} connections, ${messages} messages of 10 KiB`)
  if (!hasSmtpd()) {
    skipped("smtp: skipped, python3 with smtpd (3.11 or older) not found (apt-get install python3)")
    return
  }
  if (!needExample("smtp", "Smtp")) return
  const subjects = [
    {
      name: "ours (smtp)",
      role: "ours",
      argv: withStdoutDiscarded(ours("examples/cli.ts", "smtp", "--port", "PORT"))
    },
    {
      name: "smtpd",
      role: "peer",
      argv: withStdoutDiscarded([
        "python3",
        "-W",
        "ignore",
        "-m",
        "smtpd",
        "-n",
        "-c",
        "DebuggingServer",
        "127.0.0.1:PORT"
      ])
    }
  ]
  listCommands("smtp", subjects, [{ argv: client(messages), note: `${SMTP_RUNS} times per measurement` }])
  await withServers(subjects, async (servers) => {
    const [o, p] = await alternate(
      servers,
      async (server) => {
        let ops = 0
        for (let i = 0; i < SMTP_RUNS; i++) ops += await run(server, messages)
        return ops
      },
      // a whole run to warm up: after a tenth of one, ours was still getting faster from round to round (JIT)
      (server) => run(server, messages)
    )
    const fields = {
      section: "smtp",
      workload: `${connections} conns, ${messages} x ${size / 1024} KiB, lock-step`,
      unit: "µs/msg"
    }
    // no Node floor for SMTP: CPython's smtpd is shown for information
    addRow({ ...fields, ours: "ours", peer: "smtpd", target: undefined }, o, p, 1e6)
  })
}
