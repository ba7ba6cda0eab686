// Free loopback ports for the servers the tests and scripts start as child processes
// (redis-server, Redis Cluster nodes, a gateway, an MCP server). They are picked below the
// kernel's ephemeral range: a port in it that is free when checked can be taken, before the child
// binds it, by any outgoing connection of the machine — and a busy test run opens thousands.
import { readFileSync } from 'node:fs'
import { createServer } from 'node:net'

/** The lowest port picked. */
const LOWEST = 10_000

/** The kernel's range of ephemeral ports (where the sockets of outgoing connections get theirs). */
export function ephemeralRange (): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number)
    if (Number.isInteger(low) && Number.isInteger(high)) return [low as number, high as number]
  } catch {
    // Not Linux: the IANA range, which is what other systems use.
  }
  return [49_152, 65_535]
}

export async function portIsFree (port: number): Promise<boolean> {
  const server = createServer()
  return new Promise((resolve) => {
    server.once('error', () => { resolve(false) })
    server.listen(port, '127.0.0.1', () => { server.close(() => { resolve(true) }) })
  })
}

export interface FreePortsOptions {
  /** The first port, fixed: an error if any is taken. Default: picked at random. */
  from?: number
  /** Each port + this must be free too (a Redis Cluster node's bus port is its port + 10000). */
  offset?: number
}

/** `count` consecutive free ports (and their `offset` ports), all below the ephemeral range. */
export async function freePorts (count: number, options: FreePortsOptions = {}): Promise<number[]> {
  const { from, offset } = options
  const [ephemeralLow] = ephemeralRange()
  const highest = Math.max(LOWEST + 1, ephemeralLow - (offset ?? 0) - count)
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = from ?? LOWEST + Math.floor(Math.random() * (highest - LOWEST))
    const ports = Array.from({ length: count }, (_, i) => base + i)
    const checked = offset === undefined ? ports : ports.flatMap((port) => [port, port + offset])
    if ((await Promise.all(checked.map(portIsFree))).every(Boolean)) return ports
    if (from !== undefined) throw new Error(`ports ${base}–${base + count - 1}${offset === undefined ? '' : ' (or their bus ports)'} are taken`)
  }
  throw new Error(`no ${count} free ports in a row below ${ephemeralLow}`)
}

/** One free port, below the ephemeral range. */
export async function freePort (): Promise<number> {
  return (await freePorts(1))[0] as number
}
