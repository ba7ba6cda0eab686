// What one benchmark run emits. The gateway's bench agent and the two baseline servers all call
// emitThoughts(), so every target produces the same events from the same loop, with the same
// yield points and the same per-event work (a clock stamp and a padded thought).
import { setImmediate as nextTurn, setTimeout as sleep } from 'node:timers/promises'

/** The run input every target understands: `{ type: 'run', input: RunPlan }`. */
export interface RunPlan {
  readonly message: string
  /** Events of the run on the wire, agent_started and agent_completed included (at least 3). */
  readonly events: number
  /** Size of one agent_thinking frame on the wire, in bytes (approximately: seq digits vary). */
  readonly bytes: number
  /** Pause between thoughts in ms; 0 emits as fast as possible, yielding every YIELD_EVERY. */
  readonly intervalMs: number
  /** Baselines only: keep the run's events so that a later subscribe can replay them. */
  readonly keep?: boolean
}

/** Thoughts emitted between two turns of the event loop when the run is not paced. */
export const YIELD_EVERY = 200

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

/**
 * Emits the run's agent_thinking events through `think`: each thought starts with its send time
 * (clockUs) and is padded so the frame is about `plan.bytes` long. Returns the number emitted.
 * Every YIELD_EVERY thoughts of an unpaced run it gives the event loop a turn, then awaits
 * `ready` when given (a target's own backpressure: the gateway's drain).
 */
export async function emitThoughts (plan: RunPlan, think: (thought: string, step: number) => void, signal: AbortSignal, ready?: () => Promise<void>): Promise<number> {
  const thoughts = plan.events - 2
  const padding = 'x'.repeat(Math.max(16, plan.bytes - ENVELOPE_BYTES))
  const started = performance.now()
  let step = 0
  while (step < thoughts && !signal.aborted) {
    if (plan.intervalMs > 0) {
      const wait = started + step * plan.intervalMs - performance.now()
      if (wait > 0) await sleep(wait)
    } else if (step > 0 && step % YIELD_EVERY === 0) {
      await nextTurn()
      await ready?.()
    }
    step++
    const stamp = String(clockUs())
    think(`${stamp} ${padding.slice(stamp.length + 1)}`, step)
  }
  return step
}
