/**
 * How the raw peers of `bench/servers.ts` run as scripts: a `node:net` server on 127.0.0.1 that hands every
 * connection to `serve`, and destroys it on a socket error.
 */
import { createServer, type Socket } from "node:net"

/** What a raw server writes to and destroys: a socket, or any Duplex. */
export type Peer = Pick<NodeJS.WritableStream, "write"> & { destroy(): void }

/** Serves 127.0.0.1:`port` with `serve`, and prints "`name` listening on 127.0.0.1:`port`" once it listens. */
export const listen = (name: string, port: number, serve: (socket: Socket) => void): void => {
  createServer((socket) => {
    socket.on("error", () => socket.destroy())
    serve(socket)
  }).listen(
    // a deep backlog: the memory section opens 10,000 connections
    { port, host: "127.0.0.1", backlog: 4096 },
    () => console.log(`${name} listening on 127.0.0.1:${port}`)
  )
}
