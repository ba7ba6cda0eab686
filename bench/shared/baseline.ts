// The run logic of the two baseline servers (raw ws and Socket.IO): the same envelope as the
// gateway's events, a seq counter per run, events from the same shared emitting loop (emitRun()), one write
// per event, no log (unless the run asks to be kept for the replay workload). Naive on purpose:
// each event is an object that the transport serialises.
import { randomUUID } from 'node:crypto'
import { BENCH_AGENT, emitRun, toPlan, type RunSink } from './plan.js'

export interface WireEvent {
  readonly type: string
  readonly runId: string
  readonly threadId: string
  readonly seq: number
  readonly ts: string
  readonly data: Readonly<Record<string, unknown>>
}

export interface BaselinePeer {
  readonly userId: string
  /** A reply to this connection (run_accepted, subscribed, error). */
  reply(message: Readonly<Record<string, unknown>>): void
  /** A live event of a run this connection started (a baseline routes it as it likes). */
  live(event: WireEvent): void
  /** A replayed event, for this connection only. */
  replayed(event: WireEvent): void
}

interface KeptRun {
  readonly ownerId: string
  readonly events: WireEvent[]
}

export class BaselineRuns {
  readonly #kept = new Map<string, KeptRun>()

  handle (peer: BaselinePeer, message: Readonly<Record<string, unknown>>): void {
    if (message.type === 'run' && typeof message.input === 'object' && message.input !== null) {
      this.#start(peer, message.input as Record<string, unknown>)
    } else if (message.type === 'subscribe' && typeof message.runId === 'string') {
      this.#replay(peer, message.runId, typeof message.after === 'number' ? message.after : 0)
    } else {
      peer.reply({ type: 'error', code: 'BAD_MESSAGE', message: 'run or subscribe' })
    }
  }

  #start (peer: BaselinePeer, input: Record<string, unknown>): void {
    const plan = toPlan(input)
    const runId = randomUUID()
    const threadId = randomUUID()
    const kept: WireEvent[] | undefined = plan.keep === true ? [] : undefined
    if (kept !== undefined) this.#kept.set(runId, { ownerId: peer.userId, events: kept })
    let seq = 0
    const emit = (type: string, data: Readonly<Record<string, unknown>>): void => {
      const event: WireEvent = { type, runId, threadId, seq: ++seq, ts: new Date().toISOString(), data }
      kept?.push(event)
      peer.live(event)
    }
    const started = performance.now()
    peer.reply({ type: 'run_accepted', runId, threadId, agent: BENCH_AGENT })
    emit('agent_started', { agent: BENCH_AGENT, input })
    // Never aborted: the same loop as the gateway's agent, which checks its run's signal.
    const { signal } = new AbortController()
    // Consecutive deltas form one message, as the gateway's say() does.
    const messageId = randomUUID()
    const sink: RunSink = {
      think: (thought, step) => { emit('agent_thinking', { thought, step }) },
      say: (delta) => { emit('agent_message', { messageId, delta }) }
    }
    void emitRun(plan, sink, signal).then((emitted) => {
      emit('agent_completed', { status: 'completed', output: { events: emitted + 2 }, durationMs: Math.round(performance.now() - started) })
    })
  }

  #replay (peer: BaselinePeer, runId: string, after: number): void {
    const run = this.#kept.get(runId)
    if (run?.ownerId !== peer.userId) {
      peer.reply({ type: 'error', code: 'NOT_FOUND', message: `no run ${runId}` })
      return
    }
    peer.reply({ type: 'subscribed', runId, recovered: true, fromSeq: after + 1 })
    for (const event of run.events) if (event.seq > after) peer.replayed(event)
  }
}
