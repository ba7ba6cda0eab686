// A throwaway Redis Cluster on loopback: 3 primaries and 3 replicas of the machine's redis-server,
// each in a temporary directory, joined with `redis-cli --cluster create`. The tests start one of
// their own on free ports; by hand:
//   npm run cluster -- [--port 7101]     (starts 7101–7106, prints the EVENT_STORE, Ctrl-C stops it)
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { once } from 'node:events'
import { mkdtempSync, mkdirSync, rmSync } from 'node:fs'
import { createConnection } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { parseArgs, promisify } from 'node:util'
import { freePorts } from './ports.js'

const run = promisify(execFile)
/** A cluster node's bus port is its port + 10000. */
const BUS_OFFSET = 10_000
/** How often the six ports are picked again when one was taken between the check and the bind. */
const START_ATTEMPTS = 5

async function pingable (port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = createConnection({ host: '127.0.0.1', port })
    socket.setTimeout(1000)
    socket.once('connect', () => { socket.write('PING\r\n') })
    socket.once('data', (data) => { socket.destroy(); resolve(data.toString().startsWith('+PONG')) })
    socket.once('error', () => { resolve(false) })
    socket.once('timeout', () => { socket.destroy(); resolve(false) })
  })
}

/** A node that exited at once: its port was taken after all (another process won the race for it). */
class PortTakenError extends Error {}

export interface RedisClusterOptions {
  /** First port (the six nodes take it and the next five); free ports are picked when absent. */
  port?: number
  /** cluster-node-timeout: how long a primary may be silent before its replica takes over. */
  nodeTimeoutMs?: number
  /** Picks the six ports (default: free ones and their bus ports, below the ephemeral range: scripts/ports.ts); for tests of the retry. */
  pickPorts?: (count: number) => Promise<number[]>
}

export class RedisCluster {
  readonly dir = mkdtempSync(join(tmpdir(), 'agw-cluster-'))
  readonly processes = new Map<number, ChildProcess>()
  ports: number[] = []

  constructor (private readonly options: RedisClusterOptions = {}) {}

  /** The EVENT_STORE naming this cluster (every node as a seed). */
  get url (): string {
    return `redis-cluster://${this.ports.map((port) => `127.0.0.1:${port}`).join(',')}`
  }

  async start (): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.ports = this.options.pickPorts === undefined ? await freePorts(6, { from: this.options.port, offset: BUS_OFFSET }) : await this.options.pickPorts(6)
      const started = await Promise.allSettled(this.ports.map(async (port) => { await this.startNode(port) }))
      const failure = started.find((result) => result.status === 'rejected')
      if (failure === undefined) break
      await this.stopNodes()
      // Fixed ports are the caller's choice: say so rather than move.
      if (!(failure.reason instanceof PortTakenError) || this.options.port !== undefined || attempt === START_ATTEMPTS) throw failure.reason
    }
    await run('redis-cli', [
      '--cluster', 'create', ...this.ports.map((port) => `127.0.0.1:${port}`), '--cluster-replicas', '1', '--cluster-yes'
    ], { timeout: 30_000 })
    // Ready when every node agrees that all slots are served.
    const deadline = Date.now() + 30_000
    for (const port of this.ports) {
      while (!(await this.info(port, 'CLUSTER', 'INFO')).includes('cluster_state:ok')) {
        if (Date.now() > deadline) throw new Error(`the cluster did not become ready (node ${port})`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
    // And every primary has its replica in sync (WAIT counts only replicas that are).
    const syncDeadline = Date.now() + 60_000
    for (const port of await this.primaries()) {
      while (!/slave0:.*state=online/.test(await this.info(port, 'INFO', 'replication'))) {
        if (Date.now() > syncDeadline) throw new Error(`the replica of ${port} did not come in sync`)
        await new Promise((resolve) => setTimeout(resolve, 100))
      }
    }
  }

  private async startNode (port: number): Promise<void> {
    const dir = join(this.dir, String(port))
    mkdirSync(dir, { recursive: true })
    const child = spawn('redis-server', [
      '--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no',
      '--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf',
      '--cluster-node-timeout', String(this.options.nodeTimeoutMs ?? 2000),
      // A shard that is gone must not stop the others (the default stops the whole cluster).
      '--cluster-require-full-coverage', 'no', '--cluster-allow-reads-when-down', 'no'
    ], { stdio: 'ignore' })
    this.processes.set(port, child)
    const deadline = Date.now() + 10_000
    while (!(await pingable(port))) {
      // redis-server exits at once when it cannot bind its port or its bus port.
      if (child.exitCode !== null) throw new PortTakenError(`redis-server on ${port} exited at start (${child.exitCode}); most likely its port or bus port was taken`)
      if (Date.now() > deadline) throw new Error(`redis-server on ${port} did not start`)
      await new Promise((resolve) => setTimeout(resolve, 50))
    }
  }

  /** A redis-cli command against one node, its output. */
  async info (port: number, ...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', ['-h', '127.0.0.1', '-p', String(port), ...args], { timeout: 10_000 })
    return stdout
  }

  /** The ports of the current primaries. */
  async primaries (): Promise<number[]> {
    const alive = [...this.processes].filter(([, child]) => child.exitCode === null && child.signalCode === null).map(([port]) => port)
    const nodes = await this.info(alive[0] as number, 'CLUSTER', 'NODES')
    // A primary serves slots: the 9th field on of its line (a node that is to be a replica has none yet).
    return nodes.split('\n').filter((line) => /\bmaster\b/.test(line) && !/\bfail\b/.test(line) && line.trim().split(' ').length > 8)
      .map((line) => Number(/:(\d+)@/.exec(line)?.[1])).filter((port) => alive.includes(port))
  }

  /** The ports of the replicas of the primary on `port`. */
  async replicasOf (port: number): Promise<number[]> {
    const lines = (await this.info(port, 'CLUSTER', 'NODES')).split('\n')
    const id = lines.find((line) => line.includes('myself'))?.split(' ')[0]
    return lines.filter((line) => line.split(' ')[3] === id).map((line) => Number(/:(\d+)@/.exec(line)?.[1]))
  }

  /** kill -9 of one node. */
  async kill (port: number): Promise<void> {
    const child = this.processes.get(port)
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) return
    child.kill('SIGKILL')
    await once(child, 'exit')
  }

  async stop (): Promise<void> {
    await this.stopNodes()
    rmSync(this.dir, { recursive: true, force: true })
  }

  /** kill -9 of every node, and their data gone. */
  private async stopNodes (): Promise<void> {
    await Promise.all([...this.processes].map(async ([, child]) => {
      if (child.exitCode !== null || child.signalCode !== null) return
      child.kill('SIGKILL')
      await once(child, 'exit')
    }))
    for (const port of this.processes.keys()) rmSync(join(this.dir, String(port)), { recursive: true, force: true })
    this.processes.clear()
  }
}

async function main (): Promise<void> {
  const { values } = parseArgs({ options: { port: { type: 'string' } } })
  const cluster = new RedisCluster(values.port === undefined ? {} : { port: Number(values.port) })
  const stop = (): void => { void cluster.stop().then(() => process.exit(0)) }
  process.once('SIGINT', stop)
  process.once('SIGTERM', stop)
  try {
    await cluster.start()
  } catch (err) {
    await cluster.stop()
    throw err
  }
  process.stdout.write(`Redis Cluster ready (3 primaries, 3 replicas): EVENT_STORE=${cluster.url}\nCtrl-C stops it and deletes its data.\n`)
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  main().catch((err: unknown) => { process.stderr.write(`${String(err)}\n`); process.exit(1) })
}
