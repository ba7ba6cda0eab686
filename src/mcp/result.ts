// What an MCP tool call's result becomes in `tool_completed`: the text content and the
// structured content as they are; images, audio and embedded resources summarised (type, MIME
// type, size) rather than inlined as base64, which no timeline, log or model should carry; and
// the whole kept under a size cap, cut and marked `truncated` beyond it.
import type { CallToolResult } from '@modelcontextprotocol/sdk/types.js'

/** A content block that is not text, described rather than carried. */
export interface McpAttachment {
  readonly type: string
  readonly mimeType?: string
  /** Decoded size of inline data, or the size the server states for a link. */
  readonly bytes?: number
  readonly uri?: string
  readonly name?: string
}

export interface McpToolResult {
  /** The text blocks, joined by blank lines. */
  text?: string
  structuredContent?: Record<string, unknown>
  attachments?: McpAttachment[]
  /** Present when the result was larger than the cap: how many bytes of JSON it had. */
  truncated?: { totalBytes: number }
}

type Block = CallToolResult['content'][number]

const MAX_ATTACHMENTS = 50
// Long enough for a useful explanation, short enough for a timeline.
const MAX_ERROR_LENGTH = 1000

/** Bytes of base64 `data` once decoded, without decoding it. */
function base64Bytes (data: string): number {
  const padding = data.endsWith('==') ? 2 : data.endsWith('=') ? 1 : 0
  return Math.max(0, Math.floor((data.length * 3) / 4) - padding)
}

function describe (block: Block): McpAttachment {
  switch (block.type) {
    case 'image':
    case 'audio':
      return { type: block.type, mimeType: block.mimeType, bytes: base64Bytes(block.data) }
    case 'resource': {
      const { resource } = block
      const bytes = 'blob' in resource ? base64Bytes(resource.blob) : Buffer.byteLength(resource.text)
      return { type: 'resource', uri: resource.uri, ...(resource.mimeType === undefined ? {} : { mimeType: resource.mimeType }), bytes }
    }
    case 'resource_link':
      return {
        type: 'resource_link',
        uri: block.uri,
        name: block.name,
        ...(block.mimeType === undefined ? {} : { mimeType: block.mimeType }),
        ...(block.size === undefined ? {} : { bytes: block.size })
      }
    /* c8 ignore next 2 -- every block type of the current specification is handled above */
    default:
      return { type: String((block as { type?: unknown }).type) }
  }
}

const jsonBytes = (value: unknown): number => Buffer.byteLength(JSON.stringify(value))

/** The first `bytes` bytes of `text` as UTF-8, never splitting a character. */
function cut (text: string, bytes: number): string {
  if (bytes <= 0) return ''
  const head = Buffer.from(text, 'utf8').subarray(0, bytes).toString('utf8')
  return head.endsWith('\uFFFD') && !text.startsWith(head) ? head.slice(0, -1) : head
}

/** The text of a result's text blocks. */
export function textOf (result: Pick<CallToolResult, 'content'>): string {
  return (result.content ?? []).flatMap((block) => (block.type === 'text' ? [block.text] : [])).join('\n\n')
}

/** The message of an `isError` result, for the user: its text, shortened. */
export function errorMessage (result: Pick<CallToolResult, 'content'>, tool: string): string {
  const text = textOf(result).replace(/\s+/g, ' ').trim()
  if (text === '') return `"${tool}" reported an error without a message`
  return text.length > MAX_ERROR_LENGTH ? `${text.slice(0, MAX_ERROR_LENGTH - 1)}…` : text
}

/** A successful result as `tool_completed` carries it, at most `maxBytes` of JSON. */
export function summariseResult (result: Pick<CallToolResult, 'content' | 'structuredContent'>, maxBytes: number): McpToolResult {
  const blocks = result.content ?? []
  const summary: McpToolResult = {}
  const text = textOf(result)
  if (blocks.some((block) => block.type === 'text')) summary.text = text
  if (result.structuredContent !== undefined) summary.structuredContent = result.structuredContent
  const others = blocks.filter((block) => block.type !== 'text')
  if (others.length > 0) summary.attachments = others.slice(0, MAX_ATTACHMENTS).map(describe)
  const totalBytes = jsonBytes(summary)
  if (totalBytes <= maxBytes) return summary

  summary.truncated = { totalBytes }
  // Structured content is whole or nothing: half of the room at most, so the text keeps the rest.
  if (summary.structuredContent !== undefined && jsonBytes(summary.structuredContent) > maxBytes / 2) delete summary.structuredContent
  if (summary.text !== undefined) summary.text = ''
  while (summary.attachments !== undefined && summary.attachments.length > 0 && jsonBytes(summary) > maxBytes) summary.attachments.pop()
  if (summary.text !== undefined) {
    // JSON escapes make the encoded text longer than its bytes: cut again by what is still over.
    let kept = cut(text, maxBytes - jsonBytes(summary))
    for (let over = jsonBytes({ ...summary, text: kept }) - maxBytes; over > 0; over = jsonBytes({ ...summary, text: kept }) - maxBytes) {
      kept = cut(kept, Buffer.byteLength(kept) - over)
    }
    summary.text = kept
  }
  return summary
}
