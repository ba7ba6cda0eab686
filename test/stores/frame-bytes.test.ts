import t from 'tap'
import { RUN_EVENT_TYPES, encodeRunEvent, eventTimestamp, runFrameHead } from '../../src/protocol.js'
import { frameBytes, frameBytesBound, frameHeadBytes, typeCode, writeFrame } from '../../src/stores/frame-bytes.js'

t.test('a frame written as bytes is the frame the protocol encodes, byte for byte', async (t) => {
  const runId = '6f1c2d3e-0000-4000-8000-000000000001'
  const threadId = 'a thread "quoted" and \\ escaped, ünïcode'
  const headText = runFrameHead(runId, threadId)
  const head = frameHeadBytes(runId, threadId)
  const data = [
    '{}',
    JSON.stringify({ thought: 'plain ASCII', step: 1 }),
    JSON.stringify({ messageId: 'm', delta: 'é€😀 two, three and four UTF-8 bytes' }),
    JSON.stringify({ delta: '\u0000\n"\\' }),
    JSON.stringify({ big: 'x'.repeat(70_000) })
  ]
  const seqs = [1, 9, 10, 99, 100, 12_345, 1_000_000_007, Number.MAX_SAFE_INTEGER]
  const times = [0, Date.UTC(2026, 11, 4, 20, 0, 0, 5), 8.64e15]
  let checked = 0
  const target = Buffer.alloc(300_000, 0xff)
  for (const type of RUN_EVENT_TYPES) {
    t.equal(RUN_EVENT_TYPES[typeCode(type)], type, `${type}: its code is its place in RUN_EVENT_TYPES`)
    for (const seq of seqs) {
      for (const ms of times) {
        for (const dataJson of data) {
          const expected = Buffer.from(encodeRunEvent(headText, type, seq, eventTimestamp(ms), dataJson), 'utf8')
          const offset = 1 + (checked * 7) % 1000
          const written = writeFrame(target, offset, head, typeCode(type), seq, ms, dataJson)
          const exact = frameBytes(head, typeCode(type), seq, ms, dataJson)
          if (written !== expected.length || !target.subarray(offset, offset + written).equals(expected)) {
            t.fail(`${type} seq ${seq} at ${ms}: ${target.subarray(offset, offset + Math.min(written, 200)).toString()}`)
          }
          if (exact !== expected.length) t.fail(`frameBytes ${exact} for ${expected.length} bytes`)
          if (frameBytesBound(head, dataJson) < exact) t.fail(`the bound is below the frame's ${exact} bytes`)
          checked++
        }
      }
    }
  }
  t.equal(checked, RUN_EVENT_TYPES.length * seqs.length * times.length * data.length, 'every combination compared')
  t.equal(target[0], 0xff, 'nothing is written before the offset')
})
