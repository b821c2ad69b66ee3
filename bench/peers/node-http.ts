/**
 * The peer for the http11 section of `bench/servers.ts`: the `node:http` hello world everyone writes, on the same
 * Node. Keep-alive is node:http's default.
 *
 * Run: node bench/peers/node-http.ts PORT
 */
import { createServer } from "node:http"

const port = Number(process.argv[2] ?? 8082)
createServer((_req, res) => {
  res.writeHead(200, { "Content-Type": "text/plain", "Content-Length": 11 })
  res.end("hello world")
}).listen(port, "127.0.0.1", () => console.log(`node-http listening on 127.0.0.1:${port}`))
