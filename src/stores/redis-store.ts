// The multi-node EventStore, on Redis (ioredis). Any node serves any user: every run's log is a
// Redis Stream, its metadata a hash, live events cross nodes through pub/sub, and the node that
// executes a run holds a lease on it; when the lease lapses (the node died), whichever node
// notices first ends the run with NODE_LOST, exactly once. Layout and sizing: docs/scaling.md.
//
// Seq is assigned inside Lua scripts (atomic: no read-then-write race between writers), appends
// carry a per-run sequence number so a retried append is applied once, and a node whose
// connection drops queues its appends until Redis answers again: clients see a pause, not a gap.
import { randomUUID } from 'node:crypto'
import { Redis } from 'ioredis'
import type { FastifyBaseLogger } from 'fastify'
import { encodeRunEvent, eventTimestamp, runFrameHead, type RunEventData, type RunEventType, type TerminalStatus } from '../protocol.js'
import type {
  CreateLimits, CreateResult, EventListener, EventStore, NewRun, RunLookup, RunMeta, RunStatus, StoredEvent, StoreSubscription
} from '../contracts.js'

export interface RedisStoreOptions {
  /** redis://[user:password@]host:port[/db] or rediss://… */
  url: string
  historyTtlMs: number
  /** How long an executing node's claim on its runs lasts without renewal. */
  leaseTtlMs: number
  nodeId?: string
  /** Prefix of every key and channel, to share a Redis between deployments. */
  keyPrefix?: string
  log?: Pick<FastifyBaseLogger, 'warn' | 'error'>
}

const DAY_MS = 86_400_000
const NODE_LOST = { code: 'NODE_LOST', message: 'The node running this run stopped before it finished' }

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

const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// KEYS: run, owner, active, leases, thread. ARGV: runId, threadId, agent, ownerId, node, createdAt,
// maxActive, leaseTtlMs, exclusive ('1' or '0'), the prefix of run keys. Returns {1, active},
// {0, active} at the owner's limit, {-2, runId} when the thread is exclusive and busy.
const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return {-1, 0} end
if ARGV[9] == '1' then
  local latest = redis.call('GET', KEYS[5])
  if latest and redis.call('HGET', ARGV[10] .. latest .. '}', 'status') == 'running' then return {-2, latest} end
end
local active = redis.call('SCARD', KEYS[3])
if active >= tonumber(ARGV[7]) then return {0, active} end
${NOW}
redis.call('SADD', KEYS[3], ARGV[1])
redis.call('HSET', KEYS[1], 'threadId', ARGV[2], 'agent', ARGV[3], 'ownerId', ARGV[4], 'node', ARGV[5],
  'status', 'running', 'createdAt', ARGV[6], 'lastSeq', 0, 'lastAppend', 0)
redis.call('SET', KEYS[2], ARGV[4])
redis.call('SET', KEYS[5], ARGV[1])
redis.call('ZADD', KEYS[4], now + tonumber(ARGV[8]), ARGV[1])
return {1, active + 1}
`

// A batch of events travels as one string: for each event, lines of its type, ts and dataJson
// (JSON.stringify's output, which never holds a raw newline). One argument per batch, rather
// than several per event, is what keeps the appending node's cost per event low.
//
// The live channel carries one message per batch: lines of the format tag, the appending node
// (empty when another node wrote the batch, as for NODE_LOST), the threadId and the seq of the
// batch's first event, then the batch as it came (its events have consecutive seqs). A message
// of another format (another version's) makes the subscribers re-read the log, which every
// version reads alike.
const LIVE_FORMAT = 'b2'
const LIVE_HEADER_LINES = 4

// Appends the batch in ARGV[first], assigning seqs, then applies the tool calls it opens and
// closes — ARGV[first + 1] on, three values each: '+' or '-', toolCallId, tool — and publishes
// the batch to the run's live channel. KEYS[1..3]: run, stream, tools; `channel`, `origin` and
// `threadId` are locals of the enclosing script. Leaves the last seq in `seq`.
const APPEND_EVENTS = `
local batch = ARGV[first]
local seq = tonumber(redis.call('HGET', KEYS[1], 'lastSeq'))
local firstSeq = seq + 1
local pos = 1
while pos <= #batch do
  local a = string.find(batch, '\\n', pos, true)
  local b = string.find(batch, '\\n', a + 1, true)
  local c = string.find(batch, '\\n', b + 1, true) or (#batch + 1)
  seq = seq + 1
  redis.call('XADD', KEYS[2], seq .. '-0', 't', string.sub(batch, pos, a - 1), 'ts', string.sub(batch, a + 1, b - 1), 'd', string.sub(batch, b + 1, c - 1))
  pos = c + 1
end
for i = first + 1, #ARGV, 3 do
  if ARGV[i] == '+' then redis.call('HSET', KEYS[3], ARGV[i + 1], ARGV[i + 2]) else redis.call('HDEL', KEYS[3], ARGV[i + 1]) end
end
redis.call('HSET', KEYS[1], 'lastSeq', seq)
redis.call('PUBLISH', channel, '${LIVE_FORMAT}\\n' .. origin .. '\\n' .. threadId .. '\\n' .. firstSeq .. '\\n' .. batch)
`

// Marks the run ended. KEYS[1..7]: run, stream, tools, owner, active, leases, thread; locals
// runId, status, endedAt, historyTtl, tombstoneTtl. The thread's pointer to its latest run expires
// with that run's history (unless a later run took its place).
const END_RUN = `
redis.call('HSET', KEYS[1], 'status', status, 'endedAt', endedAt)
redis.call('SREM', KEYS[5], runId)
redis.call('ZREM', KEYS[6], runId)
redis.call('DEL', KEYS[3])
redis.call('PEXPIRE', KEYS[1], historyTtl)
redis.call('PEXPIRE', KEYS[2], historyTtl)
redis.call('PEXPIRE', KEYS[4], tombstoneTtl)
if redis.call('GET', KEYS[7]) == runId then redis.call('PEXPIRE', KEYS[7], historyTtl) end
`

// A batch of events from the executing node, applied atomically. KEYS: run, stream, tools.
// ARGV: channel, threadId, batchNo (in call order), origin node, batch, tool calls… Returns
// {last seq, applied}. A batch already applied (resent after a lost reply) changes nothing and
// returns its last seq, kept for the last 64 batches.
const APPEND = `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return redis.error_reply('unknown run') end
local n = tonumber(ARGV[3])
if n <= tonumber(redis.call('HGET', KEYS[1], 'lastAppend')) then
  local slot = redis.call('HGET', KEYS[1], 'b' .. (n % 64))
  if slot and string.sub(slot, 1, #tostring(n) + 1) == n .. ':' then return {tonumber(string.sub(slot, #tostring(n) + 2)), 0} end
  return {-1, 0}
end
if status ~= 'running' then return redis.error_reply('run has ended') end
local channel, threadId, origin, first = ARGV[1], ARGV[2], ARGV[4], 5
${APPEND_EVENTS}
redis.call('HSET', KEYS[1], 'lastAppend', n, 'b' .. (n % 64), n .. ':' .. seq)
return {seq, 1}
`

// KEYS: run, stream, tools, owner, active, leases, thread. ARGV: runId, status, endedAt, historyTtl, tombstoneTtl
const END = `
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then return 0 end
local runId, status, endedAt, historyTtl, tombstoneTtl = ARGV[1], ARGV[2], ARGV[3], ARGV[4], ARGV[5]
${END_RUN}
return 1
`

// Ends a run whose node stopped renewing its lease: its open tool calls and its terminal event,
// and the end of the run, in one step, so that of several nodes noticing it only one writes them,
// and nothing can follow the terminal event. The claimant saw the open tool calls in ARGV; if
// they changed meanwhile it must look again (-1). KEYS: run, stream, tools, owner, active, leases, thread.
// ARGV: runId, channel, threadId, endedAt, historyTtl, tombstoneTtl, toolCount, toolCallIds…, batch
const LOSE = `
local runId = ARGV[1]
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then redis.call('ZREM', KEYS[6], runId) return 0 end
local score = redis.call('ZSCORE', KEYS[6], runId)
${NOW}
if score and tonumber(score) > now then return 0 end
local toolCount = tonumber(ARGV[7])
if redis.call('HLEN', KEYS[3]) ~= toolCount then return -1 end
for i = 8, 7 + toolCount do if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then return -1 end end
local channel, threadId, origin, first = ARGV[2], ARGV[3], '', 8 + toolCount
${APPEND_EVENTS}
local status, endedAt, historyTtl, tombstoneTtl = 'failed', ARGV[4], ARGV[5], ARGV[6]
${END_RUN}
return 1
`

// KEYS: leases. ARGV: leaseTtlMs, runIds… (only runs still leased are renewed)
const RENEW = `
${NOW}
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
`

// KEYS: leases. ARGV: limit. The runs whose lease has lapsed, by Redis's clock.
const EXPIRED = `
${NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
`

interface ScriptCommands {
  agwCreate(...args: Array<string | number>): Promise<[number, number | string]>
  agwAppend(...args: Array<string | number>): Promise<[number, number]>
  agwEnd(...args: Array<string | number>): Promise<number>
  agwRenew(...args: Array<string | number>): Promise<number>
  agwExpired(...args: Array<string | number>): Promise<string[]>
  agwLose(...args: Array<string | number>): Promise<number>
}

type Client = Redis & ScriptCommands

interface Channel {
  readonly ready: Promise<void>
  /** The frame head of the channel's run, once its first message told the threadId. */
  head?: string
  readonly entries: Set<{ listener: EventListener, onResync?: (() => void) | undefined }>
}

/** An append waiting for its batch to be written. */
interface PendingAppend {
  readonly type: RunEventType
  /** When it was appended (epoch ms), and the same as the frame's `ts`. */
  readonly at: number
  readonly ts: string
  readonly dataJson: string
  resolve(event: StoredEvent): void
  reject(err: unknown): void
}

/** A run this node executes: its batch counter, the batch being filled, lease renewal. */
interface OwnedRun {
  readonly threadId: string
  batchNo: number
  pending: PendingAppend[] | undefined
  /** The last batch sent: endRun waits for it. */
  lastWrite: Promise<unknown>
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

function backoff (attempt: number): number {
  return Math.min(2000, 50 * 2 ** Math.min(attempt, 6))
}

export function createRedisStore (options: RedisStoreOptions): EventStore {
  const nodeId = options.nodeId ?? randomUUID()
  const prefix = options.keyPrefix ?? 'agw:'
  const tombstoneTtl = Math.max(DAY_MS, options.historyTtlMs) + options.historyTtlMs
  const log = options.log
  // Commands wait out an outage (no retry limit) instead of failing: events are delayed, not lost.
  // Starting while Redis is unreachable is allowed: /readyz says not ready until it answers.
  const redisOptions = {
    maxRetriesPerRequest: null,
    enableOfflineQueue: true,
    retryStrategy: backoff
  }
  const command = new Redis(options.url, redisOptions) as Client
  const subscriber = new Redis(options.url, { ...redisOptions, autoResubscribe: true })
  for (const [name, lua, keys] of [
    ['agwCreate', CREATE, 5], ['agwAppend', APPEND, 3], ['agwEnd', END, 7],
    ['agwRenew', RENEW, 1], ['agwExpired', EXPIRED, 1], ['agwLose', LOSE, 7]
  ] as const) {
    command.defineCommand(name, { lua, numberOfKeys: keys })
  }
  command.on('error', (err: Error) => { log?.warn({ err: err.message }, 'redis command connection error') })
  subscriber.on('error', (err: Error) => { log?.warn({ err: err.message }, 'redis subscriber connection error') })

  const key = {
    run: (runId: string) => `${prefix}run:{${runId}}`,
    stream: (runId: string) => `${prefix}events:{${runId}}`,
    tools: (runId: string) => `${prefix}tools:{${runId}}`,
    owner: (runId: string) => `${prefix}owner:{${runId}}`,
    active: (ownerId: string) => `${prefix}active:{${encodeOwner(ownerId)}}`,
    // A thread id never holds '/', so the owner after it cannot be mistaken for part of it.
    thread: (ownerId: string, threadId: string) => `${prefix}thread:${threadId}/${encodeOwner(ownerId)}`,
    leases: `${prefix}leases`,
    live: (runId: string) => `${prefix}live:{${runId}}`,
    control: (node: string) => `${prefix}control:${node}`
  }
  const liveChannelPrefix = `${prefix}live:{`
  /** How the live messages of this node's own batches begin. */
  const ownMessageHead = Buffer.from(`${LIVE_FORMAT}\n${nodeId}\n`)

  const channels = new Map<string, Channel>()
  const owned = new Map<string, OwnedRun>()
  let onStop: (runId: string) => void = () => {}
  let closed = false

  /** An event read back from Redis (the log or the live channel); `head` is its run's runFrameHead. */
  function frameOf (head: string, seq: number, type: RunEventType, ts: string, dataJson: string): StoredEvent {
    return { seq, type, frame: Buffer.from(encodeRunEvent(head, type, seq, ts, dataJson), 'utf8'), at: Date.parse(ts) }
  }

  /** One event's lines in a batch (see LIVE_FORMAT). */
  function packed (type: RunEventType, ts: string, dataJson: string): string {
    return `${type}\n${ts}\n${dataJson}`
  }

  /** Delivers events to this node's subscribers of a run. */
  function deliver (channel: Channel, event: StoredEvent): void {
    for (const entry of channel.entries) {
      try {
        entry.listener(event)
      } catch {
        // A subscriber's failure must not stop the others.
      }
    }
  }

  subscriber.on('messageBuffer', (channelBuffer: Buffer, payload: Buffer) => {
    const channelName = channelBuffer.toString()
    if (channelName === key.control(nodeId)) {
      onStop(payload.toString())
      return
    }
    const channel = channels.get(channelName)
    if (channel === undefined) return
    // This node's own appends reached its subscribers when Redis answered them: skipped unread.
    if (payload.length > ownMessageHead.length && payload.subarray(0, ownMessageHead.length).equals(ownMessageHead)) return
    const lines = payload.toString('utf8').split('\n')
    const firstSeq = Number(lines[3])
    if (lines[0] !== LIVE_FORMAT || lines.length < LIVE_HEADER_LINES + 3 || (lines.length - LIVE_HEADER_LINES) % 3 !== 0 || !Number.isSafeInteger(firstSeq)) {
      log?.warn({ channel: channelName }, 'a live message of an unknown format; reading the log instead')
      for (const entry of channel.entries) entry.onResync?.()
      return
    }
    channel.head ??= runFrameHead(channelName.slice(liveChannelPrefix.length, -1), lines[2] as string)
    for (let i = LIVE_HEADER_LINES, seq = firstSeq; i < lines.length; i += 3, seq++) {
      deliver(channel, frameOf(channel.head, seq, lines[i] as RunEventType, lines[i + 1] as string, lines[i + 2] as string))
    }
  })

  // After a reconnection pub/sub messages may have been lost: re-establish every subscription,
  // then tell every subscriber to read the log from where it is.
  let subscriberConnectedBefore = false
  subscriber.on('ready', () => {
    if (!subscriberConnectedBefore) {
      subscriberConnectedBefore = true
      return
    }
    const names = [...channels.keys()]
    const resubscribed = names.length === 0 ? Promise.resolve() : subscriber.subscribe(...names).then(() => undefined)
    resubscribed.then(() => {
      for (const channel of channels.values()) for (const entry of channel.entries) entry.onResync?.()
    }, (err: unknown) => { log?.error({ err }, 'could not resubscribe to live events') })
  })

  subscriber.subscribe(key.control(nodeId)).catch((err: unknown) => { log?.error({ err }, 'could not subscribe to stop requests') })

  // The appends of one run made in the same tick go to Redis as one batch (one script call);
  // batches are pipelined on the one connection, which keeps them in call order. When Redis has
  // applied a batch, this node's subscribers of the run get its events at once; other nodes get
  // them through the live channel.
  function flush (runId: string, run: OwnedRun): void {
    const batch = run.pending ?? []
    run.pending = undefined
    const batchNo = ++run.batchNo
    let events = ''
    const toolCalls: string[] = []
    for (const entry of batch) {
      events += events === '' ? packed(entry.type, entry.ts, entry.dataJson) : `\n${packed(entry.type, entry.ts, entry.dataJson)}`
      if (entry.type === 'tool_executing' || entry.type === 'tool_completed') {
        const { toolCallId, tool } = JSON.parse(entry.dataJson) as { toolCallId: string, tool: string }
        toolCalls.push(entry.type === 'tool_executing' ? '+' : '-', toolCallId, tool)
      }
    }
    run.lastWrite = command.agwAppend(key.run(runId), key.stream(runId), key.tools(runId), key.live(runId), run.threadId, batchNo, nodeId, events, ...toolCalls)
      .then(([lastSeq]) => {
        if (lastSeq < 0) throw new Error(`the outcome of batch ${batchNo} of run ${runId} is unknown`)
        const head = runFrameHead(runId, run.threadId)
        const channel = channels.get(key.live(runId))
        const firstSeq = lastSeq - batch.length + 1
        batch.forEach((entry, i) => {
          const event = new AppendedEvent(head, firstSeq + i, entry)
          if (channel !== undefined) deliver(channel, event)
          entry.resolve(event)
        })
      })
      .catch((err: unknown) => {
        for (const entry of batch) entry.reject(err)
        // Whatever Redis made of the batch, this node's subscribers learn it from the log.
        const channel = channels.get(key.live(runId))
        if (channel !== undefined) for (const entry of channel.entries) entry.onResync?.()
      })
  }

  async function endRun (runId: string, status: TerminalStatus): Promise<void> {
    const [stored, threadId] = await command.hmget(key.run(runId), 'ownerId', 'threadId')
    const owner = decodeOwner(stored ?? '')
    await command.agwEnd(
      key.run(runId), key.stream(runId), key.tools(runId), key.owner(runId), key.active(owner), key.leases,
      key.thread(owner, threadId ?? ''),
      runId, status, new Date().toISOString(), options.historyTtlMs, tombstoneTtl
    )
    owned.delete(runId)
  }

  /** Ends one lapsed run with cancelled tool calls and a NODE_LOST terminal event, if still unended. */
  async function reap (runId: string): Promise<void> {
    for (let attempt = 0; attempt < 3; attempt++) {
      const [fields, tools] = await Promise.all([command.hgetall(key.run(runId)), command.hgetall(key.tools(runId))])
      if (fields.status !== 'running') {
        await command.zrem(key.leases, runId)
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
        key.run(runId), key.stream(runId), key.tools(runId), key.owner(runId), key.active(decodeOwner(fields.ownerId ?? '')), key.leases,
        key.thread(decodeOwner(fields.ownerId ?? ''), fields.threadId ?? ''), runId, key.live(runId), fields.threadId ?? '', ts, options.historyTtlMs, tombstoneTtl,
        Object.keys(tools).length, ...Object.keys(tools), events.join('\n')
      )
      if (outcome !== -1) return
    }
  }

  async function getRun (runId: string): Promise<RunLookup> {
    // The run and its tombstone in one round trip: a missing run, an expired one and another
    // user's running one all cost the same, so timing tells nobody which it was.
    const [[runErr, fields], [ownerErr, tombstone]] = await command.multi().hgetall(key.run(runId)).get(key.owner(runId)).exec() as
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

  const leaseTimer = setInterval(() => {
    if (owned.size === 0) return
    command.agwRenew(key.leases, options.leaseTtlMs, ...owned.keys()).catch((err: unknown) => {
      log?.warn({ err }, 'could not renew run leases')
    })
  }, Math.max(50, Math.floor(options.leaseTtlMs / 3)))
  leaseTimer.unref()
  const reaperTimer = setInterval(() => {
    command.agwExpired(key.leases, 100)
      .then(async (runIds) => { for (const runId of runIds) await reap(runId) })
      .catch((err: unknown) => { log?.warn({ err }, 'could not reap runs of lost nodes') })
  }, Math.max(50, Math.floor(options.leaseTtlMs / 2)))
  reaperTimer.unref()

  return {
    nodeId,

    async createRun (run: NewRun, limits: CreateLimits): Promise<CreateResult> {
      const createdAt = new Date().toISOString()
      const [status, detail] = await command.agwCreate(
        key.run(run.runId), key.owner(run.runId), key.active(run.ownerId), key.leases, key.thread(run.ownerId, run.threadId),
        run.runId, run.threadId, run.agent, encodeOwner(run.ownerId), nodeId, createdAt, limits.maxActivePerOwner, options.leaseTtlMs,
        limits.exclusiveThread === true ? '1' : '0', `${prefix}run:{`
      )
      if (status === -1) throw new Error(`run ${run.runId} already exists`)
      if (status === -2) return { created: false, busyRunId: String(detail) }
      if (status === 0) return { created: false, active: Number(detail) }
      owned.set(run.runId, { threadId: run.threadId, batchNo: 0, pending: undefined, lastWrite: Promise.resolve() })
      return { created: true, meta: { ...run, node: nodeId, status: 'running', createdAt, lastSeq: 0 } }
    },

    async threadRun (ownerId: string, threadId: string): Promise<RunMeta | undefined> {
      const runId = await command.get(key.thread(ownerId, threadId))
      if (runId === null) return undefined
      const lookup = await getRun(runId)
      return lookup.state === 'found' && lookup.meta.ownerId === ownerId ? lookup.meta : undefined
    },

    getRun,

    append (runId: string, type: RunEventType, dataJson: string): Promise<StoredEvent> {
      const run = owned.get(runId)
      if (run === undefined) return Promise.reject(new Error(`cannot append to run ${runId}: not a running run of this node`))
      if (run.pending === undefined) {
        run.pending = []
        queueMicrotask(() => { flush(runId, run) })
      }
      const pending = run.pending
      const at = Date.now()
      return new Promise((resolve, reject) => { pending.push({ type, at, ts: eventTimestamp(at), dataJson, resolve, reject }) })
    },

    async read (runId: string, afterSeq: number, limit: number): Promise<StoredEvent[]> {
      const [threadId, entries] = await Promise.all([
        command.hget(key.run(runId), 'threadId'),
        command.xrange(key.stream(runId), `${afterSeq + 1}-0`, '+', 'COUNT', limit)
      ])
      if (threadId === null) return []
      const head = runFrameHead(runId, threadId)
      return entries.map(([id, fields]) => {
        const field = (name: string): string => fields[fields.indexOf(name) + 1] ?? ''
        return frameOf(head, Number(id.slice(0, id.indexOf('-'))), field('t') as RunEventType, field('ts'), field('d'))
      })
    },

    subscribe (runId: string, listener: EventListener, onResync?: () => void): StoreSubscription {
      const name = key.live(runId)
      let channel = channels.get(name)
      if (channel === undefined) {
        channel = { ready: subscriber.subscribe(name).then(() => undefined), entries: new Set() }
        channels.set(name, channel)
      }
      const entry = { listener, onResync }
      channel.entries.add(entry)
      const current = channel
      return {
        ready: current.ready,
        unsubscribe: () => {
          current.entries.delete(entry)
          if (current.entries.size === 0 && channels.get(name) === current) {
            channels.delete(name)
            if (!closed) void subscriber.unsubscribe(name).catch(() => {})
          }
        }
      }
    },

    async endRun (runId: string, status: TerminalStatus): Promise<void> {
      const run = owned.get(runId)
      if (run?.pending !== undefined) flush(runId, run)
      await run?.lastWrite.catch(() => {})
      await endRun(runId, status)
    },

    async requestStop (meta: RunMeta): Promise<void> {
      if (meta.node === nodeId) onStop(meta.runId)
      else await command.publish(key.control(meta.node), meta.runId)
    },

    onStopRequest (handler: (runId: string) => void): void {
      onStop = handler
    },

    async ping (): Promise<void> {
      if (closed) throw new Error('redis store is closed')
      // While reconnecting a PING would only wait in the offline queue: report it at once.
      if (command.status === 'reconnecting' || command.status === 'end') throw new Error(`redis is ${command.status}`)
      let timer: NodeJS.Timeout | undefined
      try {
        await Promise.race([
          command.ping(),
          new Promise((_resolve, reject) => { timer = setTimeout(() => { reject(new Error('redis did not answer within 1 s')) }, 1000) })
        ])
      } finally {
        clearTimeout(timer)
      }
    },

    async close (): Promise<void> {
      closed = true
      clearInterval(leaseTimer)
      clearInterval(reaperTimer)
      await Promise.allSettled([...owned.values()].map((run) => run.lastWrite))
      await Promise.allSettled([command.quit(), subscriber.quit()])
    }
  }
}
