// Deadlines on one timer, for things that are all given the same time: they fall due in the
// order they were added, so they wait in a list in that order, one that is done leaves it at once
// from wherever it is, and one timer is set for the first. The run engine keeps its running runs'
// deadlines here (RUN_TIMEOUT_MS): a Node timer per run cost a `Timeout` and its callback (about
// 170 bytes, held while the run lived) and an async resource to start it, for a deadline most runs
// never reach. The Redis store keeps here each write step waiting on Redis, given up on when the
// run's lease would lapse (LEASE_TTL_MS). (Token expiries, src/delivery/expiries.ts, share one
// timer too, but in whole-second buckets: a JWT's `exp` is a second, where these are exact to the
// millisecond.)
//
// A list, not a Set: a Set that empties and fills again with every write step (the Redis
// store's did) gets a new hash table each time it grows or shrinks, and with the Redis store's
// Set the scavenges promoted about 1.7 times what they do on this list (docs/performance.md,
// "The Redis store's waiting writes on the deadline list"): what fits is a dropped table, already
// in the old generation, still pointing at the young entries it held. An entry leaving the list
// clears its links.
import type { Expiring } from './delivery/expiries.js'

/** A place in the list: the deadline of one target, until it passes or the target is done. */
export class Deadline {
  prev: Deadline | undefined = undefined
  next: Deadline | undefined = undefined
  /** In the list (not yet due, not removed). */
  queued = true

  constructor (readonly at: number, readonly target: Expiring) {}
}

/** setTimeout cannot wait longer than this; a longer wait re-arms when it fires. */
const MAX_DELAY_MS = 2 ** 31 - 1

export interface DeadlineListOptions {
  /** The clock, in ms (for tests). Default: performance.now. */
  now?: () => number
  /**
   * The timer does not keep the process alive, and stays armed when the list empties: a list that
   * empties and fills again at every step (one entry per write in flight) then sets no timer per
   * step. Default false: a deadline keeps the process alive, and an empty list holds no timer.
   */
  unref?: boolean
}

export class DeadlineList {
  #head: Deadline | undefined
  #tail: Deadline | undefined
  #size = 0
  #timer: NodeJS.Timeout | undefined
  /** When the timer is set to fire (clock ms). */
  #armedFor = Infinity

  readonly #now: () => number
  readonly #unref: boolean

  /** `timeoutMs`: every deadline's distance from when it is added. */
  constructor (readonly timeoutMs: number, options: DeadlineListOptions = {}) {
    this.#now = options.now ?? (() => performance.now())
    this.#unref = options.unref === true
  }

  /** Deadlines waiting. */
  get size (): number {
    return this.#size
  }

  /** `target.expire()` is called `timeoutMs` from now, unless `remove` comes first. */
  add (target: Expiring): Deadline {
    const deadline = new Deadline(this.#now() + this.timeoutMs, target)
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

  /** Its target is done: it will not be called. Removing one twice, or after it fell due, does nothing. */
  remove (deadline: Deadline): void {
    if (!deadline.queued) return
    this.#unlink(deadline)
    // An emptied list lets the process exit: no timer is left waiting for nothing. An unref'd
    // timer does not hold the process, and is left to fire once for nothing instead.
    if (this.#size === 0 && !this.#unref) this.#disarm()
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
    this.#timer = setTimeout(this.#fire, Math.min(MAX_DELAY_MS, Math.max(0, Math.ceil(at - this.#now()))))
    if (this.#unref) this.#timer.unref()
  }

  #disarm (): void {
    clearTimeout(this.#timer)
    this.#timer = undefined
    this.#armedFor = Infinity
  }

  readonly #fire = (): void => {
    this.#timer = undefined
    this.#armedFor = Infinity
    const now = this.#now()
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
