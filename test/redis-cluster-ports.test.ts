// The throwaway Redis Cluster of the tests and `npm run cluster` (scripts/redis-cluster.ts): its
// ports stay out of the kernel's ephemeral range, where any outgoing connection of a busy machine
// can take one between our check and redis-server's bind; and a port lost that way anyway is
// picked again rather than failing the test that wanted a cluster.
import { createServer, type Server } from 'node:net'
import t from 'tap'
import { RedisCluster } from '../scripts/redis-cluster.js'
import { ephemeralRange, freePort, freePorts } from '../scripts/ports.js'
import { clusterSkip } from './redis-cluster.js'

const skip = await clusterSkip(t)

async function listenOn (port: number): Promise<Server> {
  const server = createServer()
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, '127.0.0.1', resolve)
  })
  return server
}

t.test('free ports and their bus ports are below the ephemeral range, six in a row', async (t) => {
  const [low, high] = ephemeralRange()
  t.ok(low > 10_000 + 10_000 + 6 && high >= low, `the range (${low}–${high}) leaves room below it`)
  for (let i = 0; i < 20; i++) {
    const ports = await freePorts(6, { offset: 10_000 })
    t.same(ports, Array.from({ length: 6 }, (_, k) => (ports[0] as number) + k))
    t.ok(ports.every((port) => port >= 10_000 && port + 10_000 < low), `${ports.join(',')} (+10000) is below ${low}`)
  }
})

t.test('one free port (for a single redis-server, a gateway, an MCP server) is below the range too', async (t) => {
  const [low] = ephemeralRange()
  for (let i = 0; i < 20; i++) {
    const port = await freePort()
    t.ok(port >= 10_000 && port < low, `${port} is below ${low}`)
  }
})

t.test('fixed ports that are taken: a clear error, no cluster', { skip }, async (t) => {
  const taken = await listenOn(0)
  t.teardown(() => { taken.close() })
  const port = (taken.address() as { port: number }).port
  const cluster = new RedisCluster({ port })
  t.teardown(() => cluster.stop())
  await t.rejects(cluster.start(), new RegExp(`ports ${port}–${port + 5} \\(or their bus ports\\) are taken`))
  t.equal(cluster.processes.size, 0)
})

t.test('a port taken between the check and the bind: the cluster picks six others and starts', { skip }, async (t) => {
  // What losing the race looks like to start(): the picked ports include one another process holds.
  const [first] = await freePorts(6, { offset: 10_000 })
  const taken = await listenOn(first as number)
  t.teardown(() => { taken.close() })
  const picks: number[][] = []
  const cluster = new RedisCluster({
    pickPorts: async (count) => {
      const ports = picks.length === 0 ? Array.from({ length: count }, (_, k) => (first as number) + k) : await freePorts(count, { offset: 10_000 })
      picks.push(ports)
      return ports
    }
  })
  t.teardown(() => cluster.stop())
  await cluster.start()
  t.equal(picks.length, 2, 'one more pick after the lost port')
  t.same(cluster.ports, picks[1])
  t.notOk(cluster.ports.includes(first as number))
  t.same([...cluster.processes.keys()].sort(), [...cluster.ports].sort(), 'the nodes of the first try are gone')
  t.match(await cluster.info(cluster.ports[0] as number, 'CLUSTER', 'INFO'), /cluster_state:ok/)
})
