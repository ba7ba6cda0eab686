// The AI SDK's useChat in a real browser against POST /v1/chat: a page built at test time from
// react, react-dom and @ai-sdk/react (bundled with esbuild), loaded in Debian's chromium driven by
// playwright-core. The page keeps its messages in localStorage, as an app that persists its chat
// would, and uses `resume: true`; the test reloads it mid-run and checks that the same assistant
// message completes, every part once. Nothing here races: the run's second tool call holds until
// the reloaded page's resume request has been answered, so the reload is mid-run however slow the
// machine, and the test waits for the assistant's answer, which only the resumed stream can bring
// (the page at mount already shows the user's text and status "ready").
// Outside CI the file skips (visibly) without chromium.
// `UPDATE_SCREENSHOT=1` also saves the finished chat to docs/ai-sdk-chat.png.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t from 'tap'
import { build } from 'esbuild'
import { chromium, type Page } from 'playwright-core'
import { createDemoAgent } from '../../src/agents/demo.js'
import { defineTool } from '../../src/contracts.js'
import { calculator, factLookup, textStats, unitConverter } from '../../src/tools/index.js'
import { buildApp, listen, testEnv, tokenFor } from '../helpers.js'
import { CHROMIUM, chromiumSkip } from './chromium.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const QUESTION = 'What is 12 * (3 + 4)? And convert 5 km to miles'
const skip = chromiumSkip(t)

// The page: a chat with useChat, DefaultChatTransport and resume: true — the client code of
// docs/integrations.md#ai-sdk — that renders each part of each message and keeps the messages in
// localStorage. It publishes what it holds as `window.chat` for the test to read.
const PAGE_SOURCE = `
import { createElement as h, useEffect, useState } from 'react'
import { createRoot } from 'react-dom/client'
import { useChat } from '@ai-sdk/react'
import { DefaultChatTransport } from 'ai'

const params = new URLSearchParams(location.hash.slice(1))
const chatId = params.get('chat')
const storageKey = 'chat:' + chatId
const transport = new DefaultChatTransport({
  api: '/v1/chat',
  headers: () => ({ authorization: 'Bearer ' + params.get('token') })
})

function Part ({ part }) {
  switch (part.type) {
    case 'step-start': return h('hr')
    case 'reasoning': return h('p', { className: 'reasoning' }, part.text)
    case 'dynamic-tool': return h('div', { className: 'tool', 'data-state': part.state },
      h('b', null, part.toolName), ' ', JSON.stringify(part.input), ' → ',
      part.state === 'output-available' ? JSON.stringify(part.output) : part.state === 'output-error' ? part.errorText : '…')
    case 'text': return h('p', { className: 'text' }, part.text)
    default: return null
  }
}

function App () {
  const [initial] = useState(() => JSON.parse(localStorage.getItem(storageKey) ?? '[]'))
  const { messages, sendMessage, status, error } = useChat({ id: chatId, messages: initial, transport, resume: true })
  const [input, setInput] = useState('')
  useEffect(() => { localStorage.setItem(storageKey, JSON.stringify(messages)) }, [messages])
  window.chat = { messages, status, error: error?.message }
  return h('main', null,
    h('h1', null, 'useChat → agent-gateway'),
    messages.map((message) => h('section', { key: message.id, className: 'message ' + message.role },
      h('h2', null, message.role),
      message.parts.map((part, i) => h(Part, { key: i, part })))),
    h('form', { onSubmit: (e) => { e.preventDefault(); sendMessage({ text: input }); setInput('') } },
      h('input', { 'aria-label': 'Message', value: input, onChange: (e) => setInput(e.target.value) }),
      h('button', { type: 'submit', disabled: status !== 'ready' }, 'Send')),
    h('p', { id: 'status' }, status))
}

createRoot(document.getElementById('root')).render(h(App))
`

const PAGE_CSS = `
body { font: 15px/1.45 system-ui, sans-serif; margin: 0; background: #f6f7f9; color: #1c2330; }
main { max-width: 760px; margin: 0 auto; padding: 16px 24px; }
h1 { font-size: 20px; } h2 { font-size: 12px; text-transform: uppercase; color: #6a7385; margin: 0 0 6px; }
.message { background: #fff; border: 1px solid #dde1e8; border-radius: 8px; padding: 10px 14px; margin: 10px 0; }
.message.user { background: #e9f0ff; }
.reasoning { color: #6a7385; font-style: italic; margin: 4px 0; }
.tool { font: 13px/1.4 ui-monospace, monospace; background: #f1f3f6; border-radius: 6px; padding: 6px 8px; margin: 6px 0; }
.tool[data-state="output-available"] { border-left: 3px solid #2f9e5b; }
.text { font-weight: 600; } hr { border: 0; border-top: 1px dashed #dde1e8; }
form { display: flex; gap: 8px; } input { flex: 1; padding: 6px; } #status { color: #6a7385; }
`

interface PartView { type: string, text?: string, state?: string, toolCallId?: string, toolName?: string, output?: unknown }
interface ChatView { messages: Array<{ id: string, role: string, parts: PartView[], metadata?: { runId?: string, status?: string } }>, status: string, error?: string }

const chatView = async (page: Page): Promise<ChatView> => page.evaluate(() => JSON.parse(JSON.stringify((globalThis as unknown as { chat: ChatView }).chat)) as ChatView)

t.test('useChat with resume: true — the page is reloaded mid-run and the same assistant message completes, every part once', { skip }, async (t) => {
  const bundle = await build({
    stdin: { contents: PAGE_SOURCE, resolveDir: root, loader: 'jsx', sourcefile: 'chat-page.jsx' },
    bundle: true,
    write: false,
    format: 'esm',
    platform: 'browser',
    minify: true,
    define: { 'process.env.NODE_ENV': '"production"' },
    logLevel: 'silent'
  })
  const script = bundle.outputFiles[0]?.text ?? ''
  t.ok(script.length > 10_000, 'the page is built from react, react-dom, @ai-sdk/react and ai')

  // The demo agent at its own pace (DEMO_STEP_DELAY_MS' default), with its tools; the unit
  // converter, its second call here, holds until the test lets it go after the reload.
  let release = (): void => {}
  const released = new Promise<void>((resolve) => { release = resolve })
  let entered = (): void => {}
  const converting = new Promise<void>((resolve) => { entered = resolve })
  t.teardown(release)
  const heldConverter = defineTool({
    ...unitConverter,
    timeoutMs: 60_000,
    async execute (args, ctx) {
      entered()
      await released
      return unitConverter.execute(args, ctx)
    }
  })
  const app = await buildApp(t, {
    env: testEnv(),
    agents: { demo: createDemoAgent({ stepDelayMs: 250 }) },
    tools: [calculator, heldConverter, factLookup, textStats]
  })
  const { http } = await listen(t, app)
  const profile = await mkdtemp(join(tmpdir(), 'agw-chromium-'))
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync']
  })
  t.teardown(async () => {
    await context.close()
    await rm(profile, { recursive: true, force: true })
  })
  // The page is served at the gateway's origin (so the chat API is same-origin), by the browser itself.
  await context.route(`${http}/chat-test/**`, async (route) => {
    const path = new URL(route.request().url()).pathname
    if (path.endsWith('/app.js')) return route.fulfill({ contentType: 'text/javascript', body: script })
    return route.fulfill({
      contentType: 'text/html',
      body: `<!doctype html><html><head><meta charset="utf-8"><title>useChat</title><style>${PAGE_CSS}</style></head><body><div id="root"></div><script type="module" src="/chat-test/app.js"></script></body></html>`
    })
  })
  const page = await context.newPage()
  await page.setViewportSize({ width: 900, height: 680 })
  const errors: string[] = []
  page.on('pageerror', (error) => { errors.push(error.message) })
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()) })
  const resumeAnswers: number[] = []
  page.on('response', (response) => { if (/\/v1\/chat\/[^/]+\/stream$/.test(response.url())) resumeAnswers.push(response.status()) })

  const chatId = `chat-${Date.now()}`
  await page.goto(`${http}/chat-test/index.html#chat=${chatId}&token=${tokenFor('alice')}`)
  await page.locator('#status', { hasText: 'ready' }).waitFor()
  await page.getByRole('textbox', { name: 'Message' }).fill(QUESTION)
  await page.getByRole('button', { name: 'Send' }).click()

  // Mid-run: the first tool call has its output, the second is running, the answer is still to come.
  await converting
  await page.locator('.tool[data-state="output-available"]').first().waitFor({ timeout: 30_000 })
  await page.locator('.tool').nth(1).waitFor({ timeout: 30_000 })
  const before = await chatView(page)
  const assistant = before.messages.find((message) => message.role === 'assistant')
  const runId = assistant?.metadata?.runId ?? ''
  t.equal(assistant?.id, runId, 'the assistant message is the run')
  const lookup = await app.eventStore.getRun(runId)
  t.equal(lookup.state === 'found' && lookup.meta.status, 'running', 'the run is in flight when the page reloads')
  t.notOk(assistant?.parts.some((part) => part.type === 'text'), 'no answer yet')
  const resumed = page.waitForResponse((response) => /\/v1\/chat\/[^/]+\/stream$/.test(response.url()))
  await page.reload()
  t.equal((await resumed).status(), 200, 'the reloaded page resumes the run')
  const still = await app.eventStore.getRun(runId)
  t.equal(still.state === 'found' && still.meta.status, 'running', 'still in flight after the reload')
  release()

  await page.locator('.message.assistant .text').waitFor({ timeout: 30_000 })
  await page.locator('#status', { hasText: 'ready' }).waitFor({ timeout: 30_000 })
  const after = await chatView(page)
  t.same(after.messages.map((message) => [message.role, message.id]), [['user', before.messages[0]?.id], ['assistant', runId]], 'the same two messages: nothing added, nothing lost')
  const message = after.messages[1]
  t.match(message?.metadata, { runId, status: 'completed' }, 'completed after the reload')
  const parts = message?.parts ?? []
  const tools = parts.filter((part) => part.type === 'dynamic-tool')
  t.same(tools.map((part) => [part.toolName, part.state]), [['calculator', 'output-available'], ['convert_units', 'output-available']], 'each tool call once, with its output')
  t.same(new Set(tools.map((part) => part.toolCallId)).size, 2)
  const reasoning = parts.filter((part) => part.type === 'reasoning').map((part) => part.text)
  t.same(new Set(reasoning).size, reasoning.length, 'each thought once')
  const events = await app.eventStore.read(runId, 0, 1000)
  t.equal(reasoning.length, events.filter((event) => event.type === 'agent_thinking').length, 'every thought of the run')
  t.match(parts.filter((part) => part.type === 'text'), [{ text: '12 * (3 + 4) = 84. 5 km = 3.106855961 mi.' }], 'the answer, once')
  t.same(resumeAnswers, [204, 200], 'useChat asked to resume on both loads: a new chat has nothing to resume; after the reload the run was replayed and followed')
  t.equal(await page.locator('section.message').count(), 2, 'the page shows the two messages')
  t.same(errors, [])

  const png = await page.screenshot({ fullPage: true })
  t.same([...png.subarray(0, 4)], [0x89, 0x50, 0x4e, 0x47], 'a PNG of the finished chat')
  if (process.env.UPDATE_SCREENSHOT === '1') await writeFile(join(root, 'docs/ai-sdk-chat.png'), png)
})
