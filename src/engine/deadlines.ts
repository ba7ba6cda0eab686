// The deadlines of an engine's running runs, on one timer. Every run of an engine is given the
// same time (RUN_TIMEOUT_MS), so deadlines fall due in the order runs started: they wait in a
// list in that order, a run that ends leaves it at once from wherever it is, and one timer is set
// for the first. A Node timer per run cost a `Timeout` and its callback (about 170 bytes, held
// while the run lived) and an async resource to start it, for a deadline most runs never reach.
// (Token expiries, src/delivery/expiries.ts, share one timer too, but in whole-second buckets:
// a JWT's `exp` is a second, where a run's deadline is exact to the millisecond.)
import type { Expiring } from '../delivery/expiries.js'

/** A place in the list: the deadline of one run, until it passes or the run leaves. */
export class Deadline {
  prev: Deadline | undefined = undefined
  next: Deadline | undefined = undefined
  /** In the list (not yet due, not removed). */
  queued = true

  constructor (readonly at: number, readonly target: Expiring) {}
}

/** setTimeout cannot wait longer than this; a longer wait re-arms when it fires. */
const MAX_DELAY_MS = 2 ** 31 - 1

export class DeadlineList {
  #head: Deadline | undefined
  #tail: Deadline | undefined
  #size = 0
  #timer: NodeJS.Timeout | undefined
  /** When the timer is set to fire (clock ms). */
  #armedFor = Infinity

  /** `timeoutMs`: every deadline's distance from when it is added. `now`: the clock, in ms (for tests). */
  constructor (readonly timeoutMs: number, private readonly now: () => number = () => performance.now()) {}

  /** Deadlines waiting. */
  get size (): number {
    return this.#size
  }

  /** `target.expire()` is called `timeoutMs` from now, unless `remove` comes first. */
  add (target: Expiring): Deadline {
    const deadline = new Deadline(this.now() + this.timeoutMs, target)
    const tail = this.#tail
    if (tail === undefined) {
      this.#head = deadline
    } else {
      tail.next = deadline
      deadline.prev = tail
    }
    this.#tail = deadline
    this.#size++
    // The list is in deadline order, so only a first deadline can need the timer sooner.
    if (this.#head === deadline) this.#arm(deadline.at)
    return deadline
  }

  /** The run is over: its deadline will not be called. Removing one twice, or after it fell due, does nothing. */
  remove (deadline: Deadline): void {
    if (!deadline.queued) return
    this.#unlink(deadline)
    // An emptied list lets the process exit: no timer is left waiting for nothing.
    if (this.#size === 0) this.#disarm()
  }

  /** Drops every deadline without calling it, and the timer (the engine is closing). */
  clear (): void {
    for (let deadline = this.#head; deadline !== undefined; deadline = deadline.next) deadline.queued = false
    this.#head = this.#tail = undefined
    this.#size = 0
    this.#disarm()
  }

  #unlink (deadline: Deadline): void {
    const { prev, next } = deadline
    if (prev === undefined) this.#head = next
    else prev.next = next
    if (next === undefined) this.#tail = prev
    else next.prev = prev
    deadline.prev = deadline.next = undefined
    deadline.queued = false
    this.#size--
  }

  #arm (at: number): void {
    if (at >= this.#armedFor) return
    clearTimeout(this.#timer)
    this.#armedFor = at
    this.#timer = setTimeout(this.#fire, Math.min(MAX_DELAY_MS, Math.max(0, Math.ceil(at - this.now()))))
  }

  #disarm (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedFor = Infinity
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    this.#armedFor = Infinity
    const now = this.now()
    try {
      // Each target is told after it left the list: what it does (end its run, which removes its
      // deadline again, add others) finds the list consistent.
      for (let first = this.#head; first !== undefined && first.at <= now; first = this.#head) {
        this.#unlink(first)
        first.target.expire()
      }
    } finally {
      if (this.#head !== undefined) this.#arm(this.#head.at)
    }
  }
}
