// What one benchmark run emits. The gateway's bench agent and the two baseline servers all call
// emitRun(), so every target produces the same events from the same loop, with the same
// schedule and the same per-event work (a clock stamp and a padded thought, or a token delta).
//
// The schedule is the point of a fair benchmark. In the default `interleaved` schedule every run
// of a process is a stream in ONE shared emitting loop: each turn of the event loop emits at most
// TURN_BUDGET events in total, one per active run in rotation — as when many agents stream tokens
// at once, and each socket gets one frame per write. The `burst` schedule lets a run emit
// BURST_PER_TURN events per turn (a socket gets a whole batch in one write): it measures how well a
// target coalesces writes, not the cost of an event, and is kept as a secondary row only. A paced
// run (intervalMs > 0) is due once per interval and goes through the same shared loop.
export type Schedule = 'interleaved' | 'burst'

/** The run input every target understands: `{ type: 'run', input: RunPlan }`. */
export interface RunPlan {
  readonly message: string
  /** Events of the run on the wire, agent_started and agent_completed included (at least 3). */
  readonly events: number
  /** Size of one agent_thinking frame on the wire, in bytes (approximately: seq digits vary). */
  readonly bytes: number
  /** Pause between events in ms; 0 emits as fast as the schedule lets it. */
  readonly intervalMs: number
  /** How an unpaced run shares the event loop with the others (default interleaved). */
  readonly schedule?: Schedule
  /** `thought`: agent_thinking events of `bytes`; `token`: agent_message deltas of 4–16 bytes. */
  readonly content?: 'thought' | 'token'
  /** Baselines only: keep the run's events so that a later subscribe can replay them. */
  readonly keep?: boolean
}

/** Events emitted per turn of the event loop, all runs together, in the interleaved schedule. */
export const TURN_BUDGET = 64
/** Events one run emits per turn in the per-run burst schedule (the old benchmark's schedule). */
export const BURST_PER_TURN = 200
/** A run awaits its target's backpressure (`ready`) after every this many events. */
const READY_EVERY = 200

/** The agent name every target reports. */
export const BENCH_AGENT = 'bench'

const SAMPLE_ID = '00000000-0000-4000-8000-000000000000'
// The agent_thinking frame around an empty thought, with 4-digit seq and step.
const ENVELOPE_BYTES = JSON.stringify({
  type: 'agent_thinking', runId: SAMPLE_ID, threadId: SAMPLE_ID, seq: 1000, ts: new Date(0).toISOString(), data: { thought: '', step: 1000 }
}).length

/** The run's plan from a run input, with defaults for what a client left out. */
export function toPlan (input: Readonly<Record<string, unknown>>): RunPlan {
  const number = (key: string, fallback: number): number => (typeof input[key] === 'number' ? input[key] : fallback)
  return {
    message: typeof input.message === 'string' ? input.message : '',
    events: Math.max(3, number('events', 3)),
    bytes: number('bytes', 200),
    intervalMs: number('intervalMs', 0),
    schedule: input.schedule === 'burst' ? 'burst' : 'interleaved',
    content: input.content === 'token' ? 'token' : 'thought',
    keep: input.keep === true
  }
}

/** The monotonic clock in µs, the same clock in every process of the machine. */
export function clockUs (): number {
  return Number(process.hrtime.bigint() / 1000n)
}

/** The send time a thought carries, or undefined for a thought of another shape. */
export function stampOf (thought: string): number | undefined {
  const end = thought.indexOf(' ')
  const stamp = Number(thought.slice(0, end))
  return end > 0 && Number.isFinite(stamp) ? stamp : undefined
}

// A token delta is 4–16 bytes, too short for a full clock stamp: its first 4 characters are the
// clock in µs modulo 36^4 (~1.68 s) in base 36, enough for any latency below that.
const TOKEN_STAMP_MOD = 36 ** 4
const TOKEN_FILL = '.,;:!?-_~+=*&%$#'

/** A delta of 4–16 bytes (the length cycles with `step`) that carries the send time. */
export function tokenDelta (step: number): string {
  const stamp = (clockUs() % TOKEN_STAMP_MOD).toString(36).padStart(4, '0')
  return stamp + TOKEN_FILL.slice(0, step % 13)
}

/** The latency in µs of a delta made by tokenDelta(), or undefined for another string. */
export function tokenLatencyUs (delta: string): number | undefined {
  if (delta.length < 4) return undefined
  const stamp = parseInt(delta.slice(0, 4), 36)
  if (!Number.isFinite(stamp)) return undefined
  return ((clockUs() % TOKEN_STAMP_MOD) - stamp + TOKEN_STAMP_MOD) % TOKEN_STAMP_MOD
}

/** How a target emits a run's middle events. */
export interface RunSink {
  think(thought: string, step: number): void
  say(delta: string): void
}

interface Stream {
  readonly plan: RunPlan
  readonly sink: RunSink
  readonly signal: AbortSignal
  readonly ready: (() => Promise<void>) | undefined
  readonly padding: string
  readonly total: number
  readonly started: number
  step: number
  paused: boolean
  readonly done: (emitted: number) => void
}

/** The one emitting loop of a process: every run of the process is a stream in it. */
class EmittingLoop {
  readonly #streams: Stream[] = []
  #cursor = 0
  #scheduled = false
  #timer: NodeJS.Timeout | undefined

  add (stream: Stream): void {
    this.#streams.push(stream)
    this.wake()
  }

  wake (): void {
    if (this.#scheduled) return
    this.#scheduled = true
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer)
      this.#timer = undefined
    }
    setImmediate(this.#turn)
  }

  readonly #turn = (): void => {
    this.#scheduled = false
    const streams = this.#streams
    const now = performance.now()
    let budget = TURN_BUDGET
    let nextDue = Number.POSITIVE_INFINITY
    let visited = 0
    let again = false
    const count = streams.length
    // Round robin from where the last turn stopped: one event per due run (a burst run: a batch).
    while (visited < count && budget > 0) {
      const index = (this.#cursor + visited) % count
      visited++
      const stream = streams[index] as Stream
      if (stream.paused || stream.step >= stream.total) continue
      const { plan } = stream
      if (plan.intervalMs > 0) {
        const due = stream.started + stream.step * plan.intervalMs
        if (due > now) {
          if (due < nextDue) nextDue = due
          continue
        }
      }
      const batch = plan.intervalMs === 0 && plan.schedule === 'burst' ? BURST_PER_TURN : 1
      for (let i = 0; i < batch && stream.step < stream.total && !stream.signal.aborted; i++) emitOne(stream)
      budget -= batch
      if (stream.signal.aborted) stream.step = stream.total
      if (stream.step >= stream.total) continue
      if (stream.ready !== undefined && stream.step % READY_EVERY === 0) {
        stream.paused = true
        void stream.ready().then(() => { stream.paused = false; this.wake() })
      } else if (plan.intervalMs === 0) {
        again = true
      } else {
        nextDue = Math.min(nextDue, stream.started + stream.step * plan.intervalMs)
      }
    }
    this.#cursor = count === 0 ? 0 : (this.#cursor + visited) % count
    // Finished streams leave the ring; each completes in a later turn, as an agent's async end would.
    for (let i = streams.length - 1; i >= 0; i--) {
      const stream = streams[i] as Stream
      if (stream.step >= stream.total) {
        streams.splice(i, 1)
        if (i < this.#cursor) this.#cursor--
        const emitted = stream.step
        setImmediate(() => { stream.done(emitted) })
      }
    }
    if (this.#cursor >= streams.length) this.#cursor = 0
    if (streams.length === 0) return
    if (budget <= 0 || visited < count || again) {
      this.wake()
    } else if (Number.isFinite(nextDue)) {
      this.#timer = setTimeout(() => { this.#timer = undefined; this.wake() }, Math.max(0, nextDue - performance.now()))
    }
  }
}

function emitOne (stream: Stream): void {
  const step = ++stream.step
  if (stream.plan.content === 'token') {
    stream.sink.say(tokenDelta(step))
  } else {
    const stamp = String(clockUs())
    stream.sink.think(`${stamp} ${stream.padding.slice(stamp.length + 1)}`, step)
  }
}

const loop = new EmittingLoop()

/**
 * Emits the run's middle events (everything between agent_started and agent_completed) through
 * the process's shared emitting loop: agent_thinking whose thought starts with its send time
 * (clockUs) and is padded so the frame is about `plan.bytes` long, or agent_message deltas
 * (tokenDelta). Resolves with the number emitted. `ready`, when given, is the target's own
 * backpressure (the gateway's drain): awaited after every READY_EVERY events, the run skipping
 * its turns meanwhile.
 */
export function emitRun (plan: RunPlan, sink: RunSink, signal: AbortSignal, ready?: () => Promise<void>): Promise<number> {
  return new Promise((resolve) => {
    loop.add({
      plan,
      sink,
      signal,
      ready,
      padding: 'x'.repeat(Math.max(16, plan.bytes - ENVELOPE_BYTES)),
      total: plan.events - 2,
      started: performance.now(),
      step: 0,
      paused: false,
      done: resolve
    })
  })
}
