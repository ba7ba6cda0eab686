// The Redis store's Lua scripts: each changes one run's keys atomically, on one hash slot (the
// keys a script touches are all in its KEYS, or built from them inside the same slot). Every
// script is defined by createRedisStore with `PUBLISH` set to the topology's publish command.
import type { Redis } from 'ioredis'

export const NOW = `
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
`

// KEYS: run, owner, active, leases, thread. ARGV: runId, threadId, agent, ownerId, node, createdAt,
// maxActive, leaseTtlMs, exclusive ('1' or '0'), the head and tail of a run key in this slot. Returns {1, active},
// {0, active} at the owner's limit, {-2, runId} when the thread is exclusive and busy.
export const CREATE = `
if redis.call('EXISTS', KEYS[1]) == 1 or redis.call('EXISTS', KEYS[2]) == 1 then return {-1, 0} end
if ARGV[9] == '1' then
  local latest = redis.call('GET', KEYS[5])
  if latest and redis.call('HGET', ARGV[10] .. latest .. ARGV[11], 'status') == 'running' then return {-2, latest} end
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
export const LIVE_FORMAT = 'b2'
export const LIVE_HEADER_LINES = 4

// Appends the batch in ARGV[first], assigning seqs, then applies the tool calls it opens and
// closes — ARGV[first + 1] on, three values each: '+' or '-', toolCallId, tool — and publishes
// the batch to the run's live channel (unless `channel` is empty: the node publishes it later). KEYS[1..3]: run, stream, tools; `channel`, `origin` and
// `threadId` are locals of the enclosing script. Leaves the last seq in `seq`.
export const APPEND_EVENTS = `
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
if channel ~= '' then redis.call(PUBLISH, channel, '${LIVE_FORMAT}\\n' .. origin .. '\\n' .. threadId .. '\\n' .. firstSeq .. '\\n' .. batch) end
`

// Marks the run ended. KEYS[1..7]: run, stream, tools, owner, active, leases, thread; locals
// runId, status, endedAt, historyTtl, tombstoneTtl. The thread's pointer to its latest run expires
// with that run's history (unless a later run took its place).
export const END_RUN = `
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
// returns its last seq, kept for the last 64 batches. Batches apply in order: a batch whose
// predecessor is missing (a failover lost it before a replica had it) is refused with
// {-2, last batch applied}, and the node sends the missing ones again first.
export const APPEND = `
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return redis.error_reply('unknown run') end
local n = tonumber(ARGV[3])
local lastAppend = tonumber(redis.call('HGET', KEYS[1], 'lastAppend'))
if n <= lastAppend then
  local slot = redis.call('HGET', KEYS[1], 'b' .. (n % 64))
  if slot and string.sub(slot, 1, #tostring(n) + 1) == n .. ':' then return {tonumber(string.sub(slot, #tostring(n) + 2)), 0} end
  return {-1, 0}
end
if status ~= 'running' then return redis.error_reply('run has ended') end
if n > lastAppend + 1 then return {-2, lastAppend} end
local channel, threadId, origin, first = ARGV[1], ARGV[2], ARGV[4], 5
${APPEND_EVENTS}
redis.call('HSET', KEYS[1], 'lastAppend', n, 'b' .. (n % 64), n .. ':' .. seq)
return {seq, 1}
`

// KEYS: run, stream, tools, owner, active, leases, thread. ARGV: runId, status, endedAt, historyTtl, tombstoneTtl
export const END = `
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
export const LOSE = `
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
export const RENEW = `
${NOW}
for i = 2, #ARGV do redis.call('ZADD', KEYS[1], 'XX', now + tonumber(ARGV[1]), ARGV[i]) end
return #ARGV - 1
`

// KEYS: leases. ARGV: limit. The runs whose lease has lapsed, by Redis's clock.
export const EXPIRED = `
${NOW}
return redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, tonumber(ARGV[1]))
`

export interface ScriptCommands {
  agwCreate(...args: Array<string | number>): Promise<[number, number | string]>
  agwAppend(...args: Array<string | number>): Promise<[number, number]>
  agwEnd(...args: Array<string | number>): Promise<number>
  agwRenew(...args: Array<string | number>): Promise<number>
  agwExpired(...args: Array<string | number>): Promise<string[]>
  agwLose(...args: Array<string | number>): Promise<number>
}

export type Client = Redis & ScriptCommands
