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

// Defines appendEvents(runKey, streamKey, toolsKey, batch, toolFrom, toolTo, channel, origin,
// threadId): appends the batch, assigning seqs, then applies the tool calls it opens and closes —
// ARGV[toolFrom..toolTo], three values each: '+' or '-', toolCallId, tool — and publishes the
// batch to the run's live channel (unless `channel` is empty: the node publishes it later).
// Returns the last seq.
export const APPEND_EVENTS = `
local function appendEvents(runKey, streamKey, toolsKey, batch, toolFrom, toolTo, channel, origin, threadId)
  local seq = tonumber(redis.call('HGET', runKey, 'lastSeq'))
  local firstSeq = seq + 1
  local pos = 1
  while pos <= #batch do
    local a = string.find(batch, '\\n', pos, true)
    local b = string.find(batch, '\\n', a + 1, true)
    local c = string.find(batch, '\\n', b + 1, true) or (#batch + 1)
    seq = seq + 1
    redis.call('XADD', streamKey, seq .. '-0', 't', string.sub(batch, pos, a - 1), 'ts', string.sub(batch, a + 1, b - 1), 'd', string.sub(batch, b + 1, c - 1))
    pos = c + 1
  end
  for i = toolFrom, toolTo, 3 do
    if ARGV[i] == '+' then redis.call('HSET', toolsKey, ARGV[i + 1], ARGV[i + 2]) else redis.call('HDEL', toolsKey, ARGV[i + 1]) end
  end
  redis.call('HSET', runKey, 'lastSeq', seq)
  if channel ~= '' then redis.call(PUBLISH, channel, '${LIVE_FORMAT}\\n' .. origin .. '\\n' .. threadId .. '\\n' .. firstSeq .. '\\n' .. batch) end
  return seq
end
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

// Outcomes of one run's batch in APPEND, besides its last seq (the batch applied now or before).
export const BATCH_UNKNOWN_OUTCOME = -1
export const BATCH_OUT_OF_ORDER = -2
export const BATCH_UNKNOWN_RUN = -3
export const BATCH_RUN_ENDED = -4

// The next batch of events of one or more runs of one hash slot, from the executing node, each
// applied atomically: one script call for every run with events waiting on this node, rather
// than one per run. KEYS: run, stream, tools of each run in turn. ARGV: the origin node, then per
// run: channel, threadId, batchNo (in call order), the batch, the count of tool-call values that
// follow, those values. Returns two numbers per run: {last seq, 1} once applied; {last seq, 0}
// for a batch already applied (resent after a lost reply), recognised for the last 64 batches;
// {-2, last batch applied} for a batch whose predecessor is missing (a failover lost it before
// a replica had it: the node sends the missing ones again first); {-1, 0} for an old batch whose
// outcome is no longer kept; {-3, 0} for a run Redis does not know; {-4, 0} for a run that ended.
// One run's refusal changes nothing for the others.
export const APPEND = `
${APPEND_EVENTS}
local origin = ARGV[1]
local out = {}
local at = 2
for k = 1, #KEYS, 3 do
  local runKey = KEYS[k]
  local channel, threadId, n, batch = ARGV[at], ARGV[at + 1], tonumber(ARGV[at + 2]), ARGV[at + 3]
  local toolFrom = at + 5
  local toolTo = at + 4 + tonumber(ARGV[at + 4])
  at = toolTo + 1
  local seq, detail = ${BATCH_UNKNOWN_RUN}, 0
  local status = redis.call('HGET', runKey, 'status')
  if status then
    local lastAppend = tonumber(redis.call('HGET', runKey, 'lastAppend'))
    if n <= lastAppend then
      seq = ${BATCH_UNKNOWN_OUTCOME}
      local slot = redis.call('HGET', runKey, 'b' .. (n % 64))
      if slot and string.sub(slot, 1, #tostring(n) + 1) == n .. ':' then seq = tonumber(string.sub(slot, #tostring(n) + 2)) end
    elseif status ~= 'running' then
      seq = ${BATCH_RUN_ENDED}
    elseif n > lastAppend + 1 then
      seq, detail = ${BATCH_OUT_OF_ORDER}, lastAppend
    else
      seq = appendEvents(runKey, KEYS[k + 1], KEYS[k + 2], batch, toolFrom, toolTo, channel, origin, threadId)
      detail = 1
      redis.call('HSET', runKey, 'lastAppend', n, 'b' .. (n % 64), n .. ':' .. seq)
    end
  end
  out[#out + 1] = seq
  out[#out + 1] = detail
end
return out
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
${APPEND_EVENTS}
local runId = ARGV[1]
if redis.call('HGET', KEYS[1], 'status') ~= 'running' then redis.call('ZREM', KEYS[6], runId) return 0 end
local score = redis.call('ZSCORE', KEYS[6], runId)
${NOW}
if score and tonumber(score) > now then return 0 end
local toolCount = tonumber(ARGV[7])
if redis.call('HLEN', KEYS[3]) ~= toolCount then return -1 end
for i = 8, 7 + toolCount do if redis.call('HEXISTS', KEYS[3], ARGV[i]) == 0 then return -1 end end
appendEvents(KEYS[1], KEYS[2], KEYS[3], ARGV[8 + toolCount], 0, -1, ARGV[2], '', ARGV[3])
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
  agwAppend(...args: Array<string | number>): Promise<number[]>
  agwEnd(...args: Array<string | number>): Promise<number>
  agwRenew(...args: Array<string | number>): Promise<number>
  agwExpired(...args: Array<string | number>): Promise<string[]>
  agwLose(...args: Array<string | number>): Promise<number>
}

export type Client = Redis & ScriptCommands
