// A socket that takes what a sink sends and counts it: it stands in for ws and the kernel where a
// measure wants the gateway's own work alone (bench:stream's CPU per event; the test of what a
// running run holds). The socket benchmark (npm run bench) measures the real thing.
import type { WebSocket } from 'ws'

export class CountingSocket {
  readonly OPEN = 1
  readonly CLOSED = 3
  readyState = 1
  readonly bufferedAmount = 0
  frames = 0
  send (): void {
    this.frames++
  }

  on (): this { return this }
  removeAllListeners (): this { return this }
  ping (): void {}
  close (): void {
    this.readyState = this.CLOSED
  }

  terminate (): void {
    this.readyState = this.CLOSED
  }

  /** Typed as what `delivery.attach` takes. */
  asWebSocket (): WebSocket {
    return this as unknown as WebSocket
  }
}
