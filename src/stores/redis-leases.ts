// Leases in the Redis store: the node that executes a run renews its lease on it, and every node
// looks for lapsed leases — a node that died — and ends those runs: their open tool calls
// cancelled and a terminal event, all with NODE_LOST, exactly once whichever node gets there
// first (the LOSE script decides). Renewals go per slot, one script call per slot this node has
// runs in, and every node scans every slot's lease set: on a cluster no key takes writes from
// every node.
import type { FastifyBaseLogger } from 'fastify'
import type { RunEventData } from '../protocol.js'
import type { KeyLayout, Slot } from './redis-topology.js'
import type { Client } from './redis-scripts.js'
import { packed } from './redis-live.js'

const NODE_LOST = { code: 'NODE_LOST', message: 'The node running this run stopped before it finished' }

export interface LeaseOptions {
  readonly command: Client
  readonly key: KeyLayout
  readonly leaseTtlMs: number
  readonly historyTtlMs: number
  /** How long a lost run's tombstone (its owner) is kept. */
  readonly tombstoneTtlMs: number
  /** The runs this node executes, by id (read at each renewal). */
  readonly owned: ReadonlyMap<string, { readonly slot: Slot }>
  /** After a run ended: its index entry (on a cluster) expires with its owner record. */
  readonly indexEnded: (runId: string) => Promise<void>
  readonly log?: Pick<FastifyBaseLogger, 'warn'> | undefined
}

/** Starts renewing this node's leases and reaping lapsed ones; `stop()` ends both. */
export function keepLeases (options: LeaseOptions): { stop(): void } {
  const { command, key, log } = options

  /** Ends one lapsed run with cancelled tool calls and a NODE_LOST terminal event, if still unended. */
  async function reap (slot: Slot, runId: string): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const [fields, tools] = await Promise.all([command.hgetall(key.run(runId, slot)), command.hgetall(key.tools(runId, slot))])
      if (fields.status !== 'running') {
        await command.zrem(key.leases(slot), runId)
        return
      }
      const ts = new Date().toISOString()
      const events: string[] = []
      for (const [toolCallId, tool] of Object.entries(tools)) {
        const data: RunEventData<'tool_completed'> = { toolCallId, tool, status: 'cancelled', error: NODE_LOST, durationMs: 0 }
        events.push(packed('tool_completed', ts, JSON.stringify(data)))
      }
      const terminal: RunEventData<'agent_completed'> = {
        status: 'failed', error: NODE_LOST, durationMs: Math.max(0, Date.now() - Date.parse(fields.createdAt ?? ts))
      }
      events.push(packed('agent_completed', ts, JSON.stringify(terminal)))
      const outcome = await command.agwLose(
        key.run(runId, slot), key.stream(runId, slot), key.tools(runId, slot), key.owner(runId, slot), key.active(fields.ownerId ?? '', slot), key.leases(slot),
        key.thread(fields.ownerId ?? '', fields.threadId ?? '', slot),
        runId, key.live(runId, slot), fields.threadId ?? '', ts, options.historyTtlMs, options.tombstoneTtlMs,
        Object.keys(tools).length, ...Object.keys(tools), events.join('\n')
      )
      if (outcome === 1) await options.indexEnded(runId)
      if (outcome !== -1) return
    }
  }

  const leaseTimer = setInterval(() => {
    const bySlot = new Map<Slot, string[]>()
    for (const [runId, run] of options.owned) {
      const runIds = bySlot.get(run.slot)
      if (runIds === undefined) bySlot.set(run.slot, [runId])
      else runIds.push(runId)
    }
    for (const [slot, runIds] of bySlot) {
      command.agwRenew(key.leases(slot), options.leaseTtlMs, ...runIds).catch((err: unknown) => {
        log?.warn({ err }, 'could not renew run leases')
      })
    }
  }, Math.max(50, Math.floor(options.leaseTtlMs / 3)))
  leaseTimer.unref()

  const reaperTimer = setInterval(() => {
    for (const slot of key.slots) {
      command.agwExpired(key.leases(slot), 100)
        .then(async (runIds) => { for (const runId of runIds) await reap(slot, runId) })
        .catch((err: unknown) => { log?.warn({ err }, 'could not reap runs of lost nodes') })
    }
  }, Math.max(50, Math.floor(options.leaseTtlMs / 2)))
  reaperTimer.unref()

  return {
    stop () {
      clearInterval(leaseTimer)
      clearInterval(reaperTimer)
    }
  }
}
