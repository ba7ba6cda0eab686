// The server side of the benchmark's control channel, shared by the three targets: report the
// port, measure CPU time over a window (from the state the warm-up left), report memory after a
// forced GC, stop on request.
import { writeFileSync } from 'node:fs'
import { getHeapSpaceStatistics } from 'node:v8'
import { setImmediate as nextTurn } from 'node:timers/promises'
import { clockUs } from './plan.js'
import { GcPauseCounter } from './gc-pauses.js'
import type { ServerMessage, ServerReply, ServerRequest, ToServer } from './ipc.js'

function forceGc (): void {
  const gc = (globalThis as { gc?: () => void }).gc
  if (gc === undefined) throw new Error('benchmark targets run with --expose-gc')
  gc()
}

function send (message: ServerMessage): void {
  process.send?.(message)
}

/** Answers the orchestrator's requests for a server listening on `port`; `close` stops it. */
export function serveControl (port: number, close: () => Promise<unknown>): void {
  const windowFile = process.env.BENCH_WINDOW_FILE
  forceGc()
  let cpu = process.cpuUsage()
  let wall = performance.now()
  let fromUs = clockUs()
  const pauses = new GcPauseCounter()

  async function answer (request: ServerRequest): Promise<ServerReply> {
    switch (request) {
      case 'measure-start':
        // No collection is forced here: the window begins in the state the warm-up left, as it
        // would for a server that was already busy. A forced full collection emptied the young
        // generation (so a short window, such as a start storm, ran without the scavenges a busy
        // server would make, flattering whoever allocates most) and deoptimised the code whose
        // embedded maps it freed (so the window paid for compiling it again).
        cpu = process.cpuUsage()
        wall = performance.now()
        fromUs = clockUs()
        pauses.start()
        return { kind: 'started' }
      case 'measure-stop': {
        const used = process.cpuUsage(cpu)
        // Under --cpu-prof, the profile's summary keeps only the samples of this window.
        if (windowFile !== undefined) writeFileSync(windowFile, JSON.stringify({ fromUs, toUs: clockUs() }))
        return { kind: 'measure', cpuUs: used.user + used.system, systemCpuUs: used.system, wallMs: performance.now() - wall, gc: pauses.stop() }
      }
      case 'memory': {
        forceGc()
        await nextTurn()
        forceGc()
        const { rss, heapUsed, external, arrayBuffers } = process.memoryUsage()
        const youngGeneration = getHeapSpaceStatistics().find((space) => space.space_name === 'new_space')?.space_size
        return { kind: 'memory', rss, heapUsed, external, arrayBuffers, ...(youngGeneration === undefined ? {} : { youngGeneration }) }
      }
    }
  }

  let stopping = false
  const stop = (): void => {
    if (stopping) return
    stopping = true
    close().then(() => { process.exit(0) }, (err: unknown) => {
      process.stderr.write(`bench target: close failed: ${String(err)}\n`)
      process.exit(1)
    })
  }
  process.on('message', (message: ToServer) => {
    if (message.type === 'stop') {
      stop()
      return
    }
    void answer(message.request).then((reply) => { send({ type: 'reply', id: message.id, reply }) })
  })
  // Never outlive the orchestrator.
  process.on('disconnect', stop)
  send({ type: 'ready', port })
}
