// The client's outgoing pace: frames wait in a queue and leave as fast as a token bucket allows,
// so the server's per-connection message limit is never what stops a request.

interface Outgoing {
  readonly frame: string
  readonly onSent?: () => void
}

/** The share of the server's announced message rate the client uses (see `adopt`). */
const RATE_SHARE = 0.9

export class Pacer {
  #queue: Outgoing[] = []
  #allowance: number
  #refilledAt = 0
  #flushTimer: ReturnType<typeof setTimeout> | undefined

  constructor (private perSecond: number, private burst: number, private readonly write: (frame: string) => boolean) {
    this.#allowance = burst
  }

  /** Messages per second currently allowed. */
  get rate (): number {
    return this.perSecond
  }

  /**
   * Paces by what the server announces (older servers announce nothing), so it need not refuse.
   * The server measures arrivals, not sends: frames held up on the way (a busy server, a slow
   * network) arrive closer together than they were sent. One message of the burst and a tenth of
   * the rate are kept in reserve so that such bunching stays within the server's bucket.
   */
  adopt (limits: { messagesPerSecond?: number, messageBurst?: number }): void {
    if (typeof limits.messagesPerSecond === 'number') this.perSecond = Math.min(this.perSecond, limits.messagesPerSecond * RATE_SHARE)
    if (typeof limits.messageBurst === 'number') this.burst = Math.min(this.burst, Math.max(1, limits.messageBurst - 1))
    this.#allowance = this.burst
    this.#refilledAt = Date.now()
  }

  /** The server refused a message for its rate: halve the pace. */
  slowDown (): void {
    this.perSecond = Math.max(1, this.perSecond / 2)
    this.burst = Math.max(1, Math.floor(this.burst / 2))
  }

  send (frame: string, onSent?: () => void): void {
    this.#queue.push({ frame, onSent })
    this.flush()
  }

  /** Drops what is queued (the connection it was meant for is gone). */
  clear (): void {
    this.#queue = []
    clearTimeout(this.#flushTimer)
    this.#flushTimer = undefined
  }

  /** Sends queued frames as fast as the bucket allows; `write` says false while there is no connection. */
  flush (): void {
    if (this.#flushTimer !== undefined) return
    const now = Date.now()
    this.#allowance = Math.min(this.burst, this.#allowance + ((now - this.#refilledAt) / 1000) * this.perSecond)
    this.#refilledAt = now
    while (this.#queue.length > 0 && this.#allowance >= 1) {
      const next = this.#queue[0] as Outgoing
      if (!this.write(next.frame)) return
      this.#queue.shift()
      this.#allowance -= 1
      next.onSent?.()
    }
    if (this.#queue.length === 0) return
    const waitMs = Math.ceil(((1 - this.#allowance) / this.perSecond) * 1000)
    this.#flushTimer = setTimeout(() => {
      this.#flushTimer = undefined
      this.flush()
    }, waitMs)
  }
}
