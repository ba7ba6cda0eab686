// The multi-node EventStore, on Redis (ioredis). Any node serves any user: every run's log is a
// Redis Stream, its metadata a hash, live events cross nodes through pub/sub, and the node that
// executes a run holds a lease on it; when the lease lapses (the node died), whichever node
// notices first ends the run with NODE_LOST, exactly once. Layout and sizing: docs/scaling.md.
//
// Seq is assigned inside Lua scripts (atomic: no read-then-write race between writers), appends
// carry a per-run sequence number so a retried append is applied once, and a node whose
// connection drops queues its appends until Redis answers again: clients see a pause, not a gap.
// The same store runs on one Redis (redis://) and on a Redis Cluster (redis-cluster://): what
// differs, the connections and the key layout, is in src/stores/redis-topology.ts. This file
// holds the runs' records and the append path; live delivery is redis-live.ts, leases and the
// ending of lost runs redis-leases.ts, the Lua scripts redis-scripts.ts.
import type { FastifyBaseLogger } from 'fastify'
import { newId } from '../ids.js'
import { encodeRunEvent, eventTimestamp, runFrameHead, type RunEventType, type TerminalStatus } from '../protocol.js'
import type {
  CreateLimits, CreateResult, EventListener, EventStore, NewRun, RunLookup, RunMeta, RunStatus, StoredEvent, StoreSubscription
} from '../contracts.js'
import { DeadlineList } from '../deadlines.js'
import { backoff, connectTopology, type Slot } from './redis-topology.js'
import {
  APPEND, BATCH_OUT_OF_ORDER, BATCH_RUN_ENDED, BATCH_UNKNOWN_RUN, CREATE, END, EXPIRED, LIVE_FORMAT, LOSE, RENEW, type Client, type ScriptCommands
} from './redis-scripts.js'
import { LiveChannels, frameOf, packed } from './redis-live.js'
import { keepLeases } from './redis-leases.js'

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db], rediss://…, or redis-cluster://[user:password@]host:port,host:port… */
  url: string
  historyTtlMs: number
  /** How long an executing node's claim on its runs lasts without renewal. */
  leaseTtlMs: number
  nodeId?: string
  /** Prefix of every key and channel, to share a Redis between deployments. */
  keyPrefix?: string
  /**
   * Replicas that must hold each batch of events (WAIT) before any subscriber gets it; 0 (the
   * default) delivers once the primary has it.
   */
  minReplicasAck?: number
  /** How long a batch waits for those replicas before it is delivered anyway (and counted). */
  replicaAckTimeoutMs?: number
  /** Called when a batch was delivered with fewer replicas holding it than minReplicasAck. */
  onReplicaShortfall?: (acked: number) => void
  log?: Pick<FastifyBaseLogger, 'warn' | 'error'>
}

const DAY_MS = 86_400_000

// Redis keeps strings as UTF-8, where every lone surrogate becomes U+FFFD: two different owner
// ids could come back as one. An id that is not well-formed Unicode (or that starts with the
// escape's own marker) is stored as the base64 of its UTF-16 code units behind a NUL, so that
// what is stored is a one-to-one image of the id; every other id is stored as it is.
const OWNER_ESCAPE = '\u0000'

function encodeOwner (ownerId: string): string {
  const plain = (ownerId as string & { isWellFormed(): boolean }).isWellFormed() && !ownerId.startsWith(OWNER_ESCAPE)
  return plain ? ownerId : `${OWNER_ESCAPE}${Buffer.from(ownerId, 'utf16le').toString('base64url')}`
}

function decodeOwner (stored: string): string {
  return stored.startsWith(OWNER_ESCAPE) ? Buffer.from(stored.slice(OWNER_ESCAPE.length), 'base64url').toString('utf16le') : stored
}

// What waits on Redis with every append and every batch (the append, the sent batch, the batch
// write) is made by a constructor, and a run's appends wait in two arrays it keeps for its life,
// not in literals made each time. V8 allocates an object or array literal's objects straight in
// the old generation once most of them have outlived a scavenge (allocation-site pretenuring), as
// appends waiting on Redis do; dead there, such an object keeps every young object it points to
// alive until a full collection (its promise's callbacks, its event's text). Objects made by `new`
// have no allocation site. On the paced Redis path V8 pretenured each literal these replace, and
// the collector paused twice as long for it.

/** An append waiting for its batch to be written. */
class PendingAppend {
  constructor (
    readonly type: RunEventType,
    /** When it was appended (epoch ms), and the same as the frame's `ts`. */
    readonly at: number,
    readonly ts: string,
    readonly dataJson: string,
    readonly resolve: (event: StoredEvent) => void,
    readonly reject: (err: unknown) => void
  ) {}
}

/** A batch as sent: kept for a while, to be sent again should a failover lose it. */
class SentBatch {
  constructor (readonly batchNo: number, readonly count: number, readonly events: string, readonly toolCalls: readonly string[]) {}
}

const NO_TOOL_CALLS: readonly string[] = []

/** A run's batch on its way, and the appends it settles once written (not kept with the batch for resending). */
class BatchWrite {
  constructor (readonly run: OwnedRun, readonly batch: SentBatch, readonly appends: PendingAppend[]) {}
}

/** What sending a batch takes. */
type BatchSend = Pick<BatchWrite, 'run' | 'batch'>

/** Batches kept per run for resending: a failover loses at most the replication lag's worth. */
const KEPT_BATCHES = 8

/**
 * Runs, and events, whose batches go in one script call at most: a script holds Redis while it
 * runs, and every other client waits for it. A single batch over the events' bound goes alone.
 */
const MAX_RUNS_PER_CALL = 64
const MAX_EVENTS_PER_CALL = 1024

/** A run's keys an append names, and its live channel: built once, not for every batch. */
interface AppendKeys {
  readonly run: string
  readonly stream: string
  readonly tools: string
  readonly live: string
}

/** A run this node executes: its batch counter, the batch being filled, lease renewal. */
interface OwnedRun {
  readonly runId: string
  readonly threadId: string
  readonly slot: Slot
  readonly keys: AppendKeys
  /** The head of its frames (runFrameHead). */
  readonly head: string
  readonly ownerId: string
  batchNo: number
  /** The appends made since its last batch was taken. */
  pending: PendingAppend[]
  /**
   * The array of the batch being written, emptied once its appends are settled: the next batch
   * taken swaps it with `pending` (one batch of a run is written at a time).
   */
  spare: PendingAppend[]
  /** Waiting for the next flush, with appends pending. */
  queued: boolean
  /** True while a batch is being written: the next one waits for it (batches apply in order). */
  writing: boolean
  /** The batch being written (never rejects): endRun waits for it. */
  lastWrite: Promise<void>
  readonly sent: SentBatch[]
}

/**
 * An append's result. Subscribers get their events from the live channel, so the frame of an
 * appended event is rarely read: it is encoded on first use rather than for every append.
 */
class AppendedEvent implements StoredEvent {
  readonly type: RunEventType
  readonly at: number
  #frame: Buffer | undefined

  constructor (private readonly head: string, readonly seq: number, private readonly entry: PendingAppend) {
    this.type = entry.type
    this.at = entry.at
  }

  get frame (): Buffer {
    this.#frame ??= Buffer.from(encodeRunEvent(this.head, this.type, this.seq, this.entry.ts, this.entry.dataJson), 'utf8')
    return this.#frame
  }
}

/** Redis did not take a run's writes for as long as its lease: the node lets go of the run. */
class OutageTooLong extends Error {
  constructor (runId: string) {
    super(`redis did not take the writes of run ${runId} within its lease (LEASE_TTL_MS); the run is left to end NODE_LOST`)
  }
}

/** A step of a run's writing waiting on Redis (all its attempts), given up on at its run's lease deadline. */
class Waiting {
  expired = false
  /** Ends the attempt under way, or the pause before the next one. */
  giveUp: (err: OutageTooLong) => void = noop

  constructor (readonly runId: string) {}

  expire (): void {
    this.expired = true
    this.giveUp(new OutageTooLong(this.runId))
  }
}

const noop = (): void => {}

/** Errors of a batch that sending it again cannot fix. */
const FINAL_APPEND_ERROR = /unknown run|run has ended|outcome of batch|batches .* are lost/

export function createRedisStore (options: RedisStoreOptions): EventStore {
  const nodeId = options.nodeId ?? newId()
  const prefix = options.keyPrefix ?? 'agw:'
  const tombstoneTtl = Math.max(DAY_MS, options.historyTtlMs) + options.historyTtlMs
  const minReplicasAck = options.minReplicasAck ?? 0
  const replicaAckTimeoutMs = options.replicaAckTimeoutMs ?? 1000
  const log = options.log
  const topology = connectTopology(options.url, prefix, log)
  const { layout: key, live } = topology
  const command = topology.command as Client
  for (const [name, lua, keys] of [
    ['agwCreate', CREATE, 5], ['agwAppend', APPEND, undefined], ['agwEnd', END, 7],
    ['agwRenew', RENEW, 1], ['agwExpired', EXPIRED, 1], ['agwLose', LOSE, 7]
  ] as const) {
    command.defineCommand(name, { lua: `local PUBLISH = '${topology.publish}'\n${lua}`, numberOfKeys: keys })
  }

  const owned = new Map<string, OwnedRun>()
  /** runId → slot, for runs looked up on a cluster (a run never moves). */
  const slots = new Map<string, Slot>()
  let onStop: (runId: string) => void = () => {}
  let closed = false

  /** The slot of a run's keys; undefined for a run the cluster does not know. */
  async function slotOf (runId: string): Promise<Slot | undefined> {
    if (!key.indexed) return ''
    const known = owned.get(runId)?.slot ?? slots.get(runId)
    if (known !== undefined) return known
    const slot = await command.get(key.index(runId))
    if (slot === null) return undefined
    if (slots.size >= 100_000) slots.delete(slots.keys().next().value as string)
    slots.set(runId, slot)
    return slot
  }

  /** After a run ended: its index (cluster) expires with its owner record. */
  async function indexEnded (runId: string): Promise<void> {
    if (key.indexed) await command.pexpire(key.index(runId), tombstoneTtl)
  }

  const channels = new LiveChannels({ live, key, nodeId, slotOf, onControl: (runId) => { onStop(runId) }, executesHere: (runId) => owned.has(runId), log })

  /**
   * Sends the next batch of each of `writes` (runs of one slot) in one script call, then (with
   * minReplicasAck) waits for replicas to hold them: WAIT goes in the same pipeline, so it
   * reaches the primary that applied the batches and covers them. Only then is each batch
   * published to the other nodes, so no socket anywhere sees it earlier. Resolves with each
   * batch's outcome in APPEND's terms, [last seq, detail], in the order of `writes`; an outcome
   * rejects alone when its batch could not be published.
   */
  async function sendBatches (writes: readonly BatchSend[]): Promise<Array<Promise<[number, number]>>> {
    const keys: string[] = []
    const args: Array<string | number> = [nodeId]
    for (const { run, batch } of writes) {
      keys.push(run.keys.run, run.keys.stream, run.keys.tools)
      args.push(minReplicasAck === 0 ? run.keys.live : '', run.threadId, batch.batchNo, batch.events, batch.toolCalls.length, ...batch.toolCalls)
    }
    if (minReplicasAck === 0) return outcomes(await command.agwAppend(keys.length, ...keys, ...args)).map(async (outcome) => outcome)
    const pipeline = command.pipeline() as unknown as ScriptCommands & { call(...args: Array<string | number>): unknown, exec(): Promise<Array<[Error | null, unknown]> | null> }
    void pipeline.agwAppend(keys.length, ...keys, ...args)
    pipeline.call('WAIT', minReplicasAck, replicaAckTimeoutMs)
    const [appended, waited] = await pipeline.exec() ?? []
    if (appended?.[0] != null) throw appended[0]
    const acked = Number(waited?.[1] ?? 0)
    if (acked < minReplicasAck) {
      options.onReplicaShortfall?.(acked)
      log?.warn({ runIds: writes.map((write) => write.run.runId), acked, wanted: minReplicasAck }, 'events delivered before enough replicas held them')
    }
    return outcomes(appended?.[1] as number[]).map(async (outcome, i) => {
      const { run, batch } = writes[i] as BatchSend
      if (outcome[1] !== 1) return outcome
      const channel = run.keys.live
      const message = `${LIVE_FORMAT}\n${nodeId}\n${run.threadId}\n${outcome[0] - batch.count + 1}\n${batch.events}`
      if (topology.publish === 'SPUBLISH') await command.spublish(channel, message)
      else await command.publish(channel, message)
      return outcome
    })
  }

  /** APPEND's reply, two numbers per run, as a pair per run. */
  function outcomes (reply: number[]): Array<[number, number]> {
    const pairs: Array<[number, number]> = []
    for (let i = 0; i < reply.length; i += 2) pairs.push([Number(reply[i]), Number(reply[i + 1])])
    return pairs
  }

  /**
   * Writes a batch, retrying through outages and failovers: a batch whose reply was lost is
   * recognised by its number (applied once), and batches a failover lost are sent again first.
   * `first`: the outcome of a call that already sent it with other runs' batches, when it was.
   * Resolves with the batch's last seq; rejects only when the run cannot take it.
   */
  async function write (run: OwnedRun, batch: SentBatch, first?: Promise<[number, number]>): Promise<number> {
    const { runId } = run
    const sendOnce = async (sent: SentBatch): Promise<[number, number]> => await (await sendBatches([{ run, batch: sent }]))[0] as [number, number]
    let sentWithOthers = first
    return untilDone(runId, 'a batch of events waits for redis', async () => {
      for (;;) {
        const outcome = sentWithOthers ?? sendOnce(batch)
        // Once: if that call failed, the batch is sent again on its own.
        sentWithOthers = undefined
        const [lastSeq, detail] = await outcome
        if (lastSeq === BATCH_UNKNOWN_RUN) throw new Error(`unknown run ${runId}`)
        if (lastSeq === BATCH_RUN_ENDED) throw new Error(`run has ended: ${runId}`)
        if (lastSeq === BATCH_OUT_OF_ORDER) {
          const missing = run.sent.filter((sent) => sent.batchNo > detail && sent.batchNo < batch.batchNo)
          if (missing.length !== batch.batchNo - detail - 1) throw new Error(`batches ${detail + 1}–${batch.batchNo - 1} of run ${runId} are lost`)
          log?.warn({ runId, batches: missing.length }, 'sending again the batches a failover lost')
          for (const sent of missing) await sendOnce(sent)
          continue
        }
        if (lastSeq < 0) throw new Error(`the outcome of batch ${batch.batchNo} of run ${runId} is unknown`)
        return lastSeq
      }
    })
  }

  /**
   * Runs a step of a run's writing again and again through outages and failovers (each step is
   * safe to repeat), until it is done or refused for good.
   */
  //
  // For as long as the run's lease: beyond it, other nodes may already count the run as lost, so
  // this node lets go of it (no more renewals) and the run ends NODE_LOST, once, when Redis is
  // back. That bounds how long a run's events can be held up by an outage: LEASE_TTL_MS.
  async function untilDone<T> (runId: string, what: string, step: () => Promise<T>): Promise<T> {
    const waiting = new Waiting(runId)
    const deadline = waits.add(waiting)
    try {
      for (let attempt = 0; ; attempt++) {
        try {
          // A command may wait in the offline queue rather than fail: the deadline ends the wait.
          return await new Promise<T>((resolve, reject) => {
            waiting.giveUp = reject
            if (waiting.expired) reject(new OutageTooLong(runId))
            else step().then(resolve, reject)
          })
        } catch (err) {
          if (err instanceof OutageTooLong || waiting.expired) {
            owned.delete(runId)
            channels.executionLost(runId)
            throw err instanceof OutageTooLong ? err : new OutageTooLong(runId)
          }
          if (closed || FINAL_APPEND_ERROR.test(err instanceof Error ? err.message : '')) throw err
          log?.warn({ runId, err: err instanceof Error ? err.message : String(err), attempt }, what)
          // The pause before the next attempt ends at the deadline too.
          await new Promise<void>((resolve) => {
            const pause = setTimeout(resolve, backoff(attempt))
            waiting.giveUp = () => {
              clearTimeout(pause)
              resolve()
            }
          })
        }
      }
    } finally {
      waits.remove(deadline)
    }
  }

  // Every step waiting on Redis, on one timer that gives up on those past their run's lease: a
  // timer per step (one per batch written) was a real share of an event's cost on Redis.
  const waits = new DeadlineList(options.leaseTtlMs, { unref: true })

  // The appends of one run made while its previous batch is being written go to Redis as one
  // batch. The runs with a batch ready are sent together, one script call per slot. A run whose
  // previous batch was just written sends its next one at the end of that tick, as the runs
  // answered with it do. A run that was idle waits for the check phase of the turn of the event
  // loop: agents are driven by callbacks of their own — timers, sockets — and Node runs the ticks
  // and microtasks after each callback, so a flush at the end of the tick would send each paced
  // agent's event alone. When Redis has applied a batch, this node's subscribers of the run get
  // its events at once; other nodes get them through the live channel.
  const ready: OwnedRun[] = []
  let flushThisTick = false
  let flushThisTurn = false

  /** Queues a run with appends waiting: `idle` for the turn's flush, otherwise for the tick's. */
  function schedule (run: OwnedRun, idle: boolean): void {
    if (idle) {
      if (!flushThisTurn && !flushThisTick) {
        flushThisTurn = true
        setImmediate(flushReady)
      }
    } else if (!flushThisTick) {
      flushThisTick = true
      process.nextTick(flushReady)
    }
    if (run.queued) return
    run.queued = true
    ready.push(run)
  }

  function flushReady (): void {
    flushThisTick = false
    flushThisTurn = false
    const bySlot = new Map<Slot, BatchWrite[]>()
    for (const run of ready.splice(0, ready.length)) {
      run.queued = false
      const write = run.writing ? undefined : nextBatch(run)
      if (write === undefined) continue
      const writes = bySlot.get(run.slot)
      if (writes === undefined) bySlot.set(run.slot, [write])
      else writes.push(write)
    }
    for (const writes of bySlot.values()) {
      let group: BatchWrite[] = []
      let events = 0
      for (const write of writes) {
        if (group.length === MAX_RUNS_PER_CALL || (group.length > 0 && events + write.batch.count > MAX_EVENTS_PER_CALL)) {
          send(group)
          group = []
          events = 0
        }
        group.push(write)
        events += write.batch.count
      }
      send(group)
    }
  }

  /** Writes the batches of `group` (runs of one slot) in one script call. */
  function send (group: readonly BatchWrite[]): void {
    if (group.length === 0) return
    if (group.length === 1) {
      start(group[0] as BatchWrite)
      return
    }
    const sent = sendBatches(group)
    group.forEach((each, i) => { start(each, sent.then(async (outcomes) => await (outcomes[i] as Promise<[number, number]>))) })
  }

  /** Takes the run's waiting appends as its next batch (undefined when there are none). */
  function nextBatch (run: OwnedRun): BatchWrite | undefined {
    const batch = run.pending
    if (batch.length === 0) return undefined
    run.pending = run.spare
    run.spare = batch
    let events = ''
    let toolCalls: string[] | undefined
    for (const entry of batch) {
      events += events === '' ? packed(entry.type, entry.ts, entry.dataJson) : `\n${packed(entry.type, entry.ts, entry.dataJson)}`
      if (entry.type === 'tool_executing' || entry.type === 'tool_completed') {
        const { toolCallId, tool } = JSON.parse(entry.dataJson) as { toolCallId: string, tool: string }
        toolCalls ??= []
        toolCalls.push(entry.type === 'tool_executing' ? '+' : '-', toolCallId, tool)
      }
    }
    const sent = new SentBatch(++run.batchNo, batch.length, events, toolCalls ?? NO_TOOL_CALLS)
    run.sent.push(sent)
    if (run.sent.length > KEPT_BATCHES) run.sent.shift()
    return new BatchWrite(run, sent, batch)
  }

  /** Writes a run's batch and settles its appends; `first` as for write(). */
  function start ({ run, batch, appends }: BatchWrite, first?: Promise<[number, number]>): void {
    const { runId } = run
    run.writing = true
    run.lastWrite = write(run, batch, first)
      .then((lastSeq) => {
        const { head } = run
        const firstSeq = lastSeq - appends.length + 1
        const events = appends.map((entry, i) => new AppendedEvent(head, firstSeq + i, entry))
        channels.deliver(runId, events)
        appends.forEach((entry, i) => { entry.resolve(events[i] as AppendedEvent) })
      }, (err: unknown) => {
        for (const entry of appends) entry.reject(err)
        // Whatever Redis made of the batch, this node's subscribers learn it from the log.
        channels.resync(runId)
      })
      .finally(() => {
        appends.length = 0
        run.writing = false
        if (run.pending.length > 0) schedule(run, false)
      })
  }

  /** Waits until every append of the run made so far is written (or refused). */
  async function drain (run: OwnedRun): Promise<void> {
    while (run.writing || run.pending.length > 0) {
      if (!run.writing) {
        const write = nextBatch(run)
        if (write !== undefined) start(write)
      }
      await run.lastWrite
    }
  }

  async function endRun (runId: string, status: TerminalStatus): Promise<void> {
    const slot = await slotOf(runId)
    if (slot === undefined) return
    const mine = owned.get(runId)
    const [stored, storedThread] = mine === undefined ? await command.hmget(key.run(runId, slot), 'ownerId', 'threadId') : []
    const owner = mine?.ownerId ?? decodeOwner(stored ?? '')
    const threadId = mine?.threadId ?? storedThread ?? ''
    const endedAt = new Date().toISOString()
    // Ending is repeated until Redis has it: a run left `running` after its terminal event would
    // get a second one (NODE_LOST) once its lease lapsed.
    const ended = await untilDone(runId, 'the end of a run waits for redis', async () => command.agwEnd(
      key.run(runId, slot), key.stream(runId, slot), key.tools(runId, slot), key.owner(runId, slot), key.active(encodeOwner(owner), slot), key.leases(slot),
      key.thread(encodeOwner(owner), threadId, slot),
      runId, status, endedAt, options.historyTtlMs, tombstoneTtl
    ))
    owned.delete(runId)
    if (ended === 1) await indexEnded(runId)
  }

  async function getRun (runId: string): Promise<RunLookup> {
    const slot = await slotOf(runId)
    if (slot === undefined) return { state: 'missing' }
    // The run and its tombstone in one round trip: a missing run, an expired one and another
    // user's running one all cost the same, so timing tells nobody which it was.
    const [[runErr, fields], [ownerErr, tombstone]] = await command.multi().hgetall(key.run(runId, slot)).get(key.owner(runId, slot)).exec() as
      [[Error | null, Record<string, string>], [Error | null, string | null]]
    if (runErr !== null) throw runErr
    if (ownerErr !== null) throw ownerErr
    if (fields.status === undefined) {
      return tombstone === null ? { state: 'missing' } : { state: 'expired', ownerId: decodeOwner(tombstone) }
    }
    const meta: RunMeta = {
      runId,
      threadId: fields.threadId ?? '',
      agent: fields.agent ?? '',
      ownerId: decodeOwner(fields.ownerId ?? ''),
      node: fields.node ?? '',
      status: fields.status as RunStatus,
      createdAt: fields.createdAt ?? '',
      lastSeq: Number(fields.lastSeq ?? 0),
      ...(fields.endedAt === undefined ? {} : { endedAt: fields.endedAt })
    }
    return { state: 'found', meta }
  }

  const leases = keepLeases({
    command, key, leaseTtlMs: options.leaseTtlMs, historyTtlMs: options.historyTtlMs, tombstoneTtlMs: tombstoneTtl, owned, indexEnded, log
  })

  return {
    nodeId,

    async createRun (run: NewRun, limits: CreateLimits): Promise<CreateResult> {
      const createdAt = new Date().toISOString()
      const slot = key.slotOfOwner(run.ownerId)
      const owner = encodeOwner(run.ownerId)
      const [status, detail] = await command.agwCreate(
        key.run(run.runId, slot), key.owner(run.runId, slot), key.active(owner, slot), key.leases(slot), key.thread(owner, run.threadId, slot),
        run.runId, run.threadId, run.agent, owner, nodeId, createdAt, limits.maxActivePerOwner, options.leaseTtlMs,
        limits.exclusiveThread === true ? '1' : '0', key.runKeyHead(slot), key.runKeyTail
      )
      if (status === -1) throw new Error(`run ${run.runId} already exists`)
      if (status === -2) return { created: false, busyRunId: String(detail) }
      if (status === 0) return { created: false, active: Number(detail) }
      // Only the run's creator learns its id, after this: nobody can look it up before it is indexed.
      if (key.indexed) await command.set(key.index(run.runId), slot)
      const keys = { run: key.run(run.runId, slot), stream: key.stream(run.runId, slot), tools: key.tools(run.runId, slot), live: key.live(run.runId, slot) }
      owned.set(run.runId, {
        runId: run.runId, threadId: run.threadId, slot, keys, head: runFrameHead(run.runId, run.threadId), ownerId: run.ownerId, batchNo: 0, pending: [], spare: [], queued: false, writing: false, lastWrite: Promise.resolve(), sent: []
      })
      return { created: true, meta: { runId: run.runId, threadId: run.threadId, agent: run.agent, ownerId: run.ownerId, node: nodeId, status: 'running', createdAt, lastSeq: 0 } }
    },

    async threadRun (ownerId: string, threadId: string): Promise<RunMeta | undefined> {
      const runId = await command.get(key.thread(encodeOwner(ownerId), threadId, key.slotOfOwner(ownerId)))
      if (runId === null) return undefined
      const lookup = await getRun(runId)
      return lookup.state === 'found' && lookup.meta.ownerId === ownerId ? lookup.meta : undefined
    },

    getRun,

    append (runId: string, type: RunEventType, dataJson: string): Promise<StoredEvent> {
      const run = owned.get(runId)
      if (run === undefined) return Promise.reject(new Error(`cannot append to run ${runId}: not a running run of this node`))
      const pending = run.pending
      if (pending.length === 0 && !run.writing) schedule(run, true)
      const at = Date.now()
      return new Promise((resolve, reject) => { pending.push(new PendingAppend(type, at, eventTimestamp(at), dataJson, resolve, reject)) })
    },

    async read (runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
      const slot = await slotOf(runId)
      if (slot === undefined) return []
      const [threadId, entries] = await Promise.all([
        command.hget(key.run(runId, slot), 'threadId'),
        command.xrange(key.stream(runId, slot), `${afterSeq + 1}-0`, '+', 'COUNT', limit)
      ])
      if (threadId === null) return []
      const head = runFrameHead(runId, threadId)
      return entries.map(([id, fields]) => {
        const field = (name: string): string => fields[fields.indexOf(name) + 1] ?? ''
        return frameOf(head, Number(id.slice(0, id.indexOf('-'))), field('t') as RunEventType, field('ts'), field('d'))
      })
    },

    subscribe (runId: string, listener: EventListener, onResync?: () => void): StoreSubscription {
      return channels.subscribe(runId, listener, onResync)
    },

    async endRun (runId: string, status: TerminalStatus): Promise<void> {
      const run = owned.get(runId)
      if (run !== undefined) await drain(run)
      await endRun(runId, status)
    },

    async requestStop (meta: RunMeta): Promise<void> {
      if (meta.node === nodeId) onStop(meta.runId)
      else if (topology.publish === 'SPUBLISH') await command.spublish(key.control(meta.node), meta.runId)
      else await command.publish(key.control(meta.node), meta.runId)
    },

    onStopRequest (handler: (runId: string) => void): void {
      onStop = handler
    },

    async ping (): Promise<void> {
      if (closed) throw new Error('redis store is closed')
      await topology.ping()
    },

    async close (): Promise<void> {
      closed = true
      channels.close()
      leases.stop()
      await Promise.allSettled([...owned.values()].map((run) => run.lastWrite))
      await topology.quit()
    }
  }
}
