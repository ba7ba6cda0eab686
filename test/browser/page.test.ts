// The demo page in a real browser: Debian's chromium, headless, driven by playwright-core,
// against the gateway on a real port. Outside CI the file skips (visibly) when chromium is not
// installed; in CI (`CI` set) a missing chromium fails it, since CI counts skips as failures.
// `npm run screenshot` (UPDATE_SCREENSHOT=1) also saves the finished run to docs/demo.png.
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import t, { type Test } from 'tap'
import type WebSocket from 'ws'
import { Type } from 'typebox'
import { chromium, type BrowserContext, type Page } from 'playwright-core'
import type { FastifyInstance } from 'fastify'
import { defineTool, type Agent } from '../../src/index.js'
import { demoTools } from '../../src/tools/index.js'
import type { RunEvent } from '../../src/protocol.js'
import { buildApp, listen, runProblems, testEnv, tokenFor } from '../helpers.js'
import { CHROMIUM, chromiumSkip } from './chromium.js'

const root = fileURLToPath(new URL('../..', import.meta.url))
const QUESTION = 'What is 12 * (3 + 4)? And convert 5 km to miles'
const skip = chromiumSkip(t)

let context: BrowserContext | undefined

/** One headless chromium for the file (closed when the file ends), with a fresh profile; a new page per test. */
async function browser (): Promise<BrowserContext> {
  if (context === undefined) {
    const profile = await mkdtemp(join(tmpdir(), 'agw-chromium-'))
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      // Without the background-networking flags chromium reaches out to Google's services, which
      // this machine's closed network refuses.
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync']
    })
    const opened = context
    t.teardown(async () => {
      await opened.close()
      await rm(profile, { recursive: true, force: true })
    })
  }
  return context
}

interface Opened {
  page: Page
  /** Console errors and uncaught exceptions of the page. */
  errors: string[]
  /** Every URL the page requested or connected to. */
  requests: string[]
}

async function open (t: Test, url: string, viewport = { width: 960, height: 900 }): Promise<Opened> {
  const page = await (await browser()).newPage()
  t.teardown(() => page.close())
  await page.setViewportSize(viewport)
  const errors: string[] = []
  const requests: string[] = []
  page.on('console', (message) => { if (message.type() === 'error') errors.push(message.text()) })
  page.on('pageerror', (error) => { errors.push(error.message) })
  page.on('request', (request) => { requests.push(request.url()) })
  page.on('websocket', (socket) => { requests.push(socket.url()) })
  await page.goto(url)
  return { page, errors, requests }
}

/** The gateway's server-side sockets, so a test can cut them as a network drop would. */
function serverSockets (app: FastifyInstance): { sockets: Set<WebSocket>, opened: () => number } {
  const sockets = new Set<WebSocket>()
  let count = 0
  app.websocketServer.on('connection', (socket: WebSocket) => {
    count++
    sockets.add(socket)
    socket.on('close', () => { sockets.delete(socket) })
  })
  return { sockets, opened: () => count }
}

async function logged (app: FastifyInstance, runId: string): Promise<RunEvent[]> {
  return (await app.eventStore.read(runId, 0, 100_000)).map((event) => JSON.parse(event.frame.toString()) as RunEvent)
}

interface Rendered {
  runId: string
  /** `data-seq` of the timeline entries and answer pieces, `data-completed-seq` and `data-progress-seqs` of tool cards, in document order. */
  seqs: Array<{ seq: number, completedSeq?: number, progressSeqs?: number[], type?: string }>
  entries: Array<{ type: string, text: string, status?: string, busy?: string }>
  answer: string
}

/** What the page shows for its `index`-th run. */
async function rendered (page: Page, index = 0): Promise<Rendered> {
  return page.evaluate((i) => {
    const doc = (globalThis as any).document
    const run = doc.querySelectorAll('.agw-run')[i]
    const seqs = [...run.querySelectorAll('[data-seq], [data-completed-seq]')].map((el: any) => ({
      seq: Number(el.dataset.seq),
      ...(el.dataset.completedSeq === undefined ? {} : { completedSeq: Number(el.dataset.completedSeq) }),
      ...(el.dataset.progressSeqs === undefined ? {} : { progressSeqs: el.dataset.progressSeqs.split(' ').map(Number) }),
      ...(el.dataset.type === undefined ? {} : { type: el.dataset.type })
    }))
    const entries = [...run.querySelectorAll('.agw-timeline > li')].map((el: any) => ({
      type: el.dataset.type,
      text: el.textContent,
      ...(el.dataset.status === undefined ? {} : { status: el.dataset.status }),
      ...(el.getAttribute('aria-busy') === null ? {} : { busy: el.getAttribute('aria-busy') })
    }))
    const answer = [...run.querySelectorAll('.agw-answer-text')].map((el: any) => el.textContent).join('')
    return { runId: run.dataset.runId, seqs, entries, answer }
  }, index)
}

/** Every seq of the run rendered exactly once, in order: the timeline is the log, no more, no less. */
function checkTimeline (t: Test, view: Rendered, events: readonly RunEvent[]): void {
  const shown = view.seqs.flatMap((item) => [item.seq, ...(item.completedSeq === undefined ? [] : [item.completedSeq]), ...(item.progressSeqs ?? [])]).filter((seq) => !Number.isNaN(seq))
  t.same([...shown].sort((a, b) => a - b), events.map((event) => event.seq), 'each event is on the page exactly once')
  const order = view.seqs.map((item) => item.seq)
  t.same(order, [...order].sort((a, b) => a - b), 'in seq order')
  const deltas = events.flatMap((event) => (event.type === 'agent_message' ? [event.data.delta] : []))
  t.equal(view.answer, deltas.join(''), 'the answer is every delta, once')
}

t.test('a message: the five critical events in order, the tool cards, the answer and the final status', { skip }, async (t) => {
  const app = await buildApp(t, { env: testEnv({ APP_ENV: 'development', JWT_SECRET: '', DEMO_STEP_DELAY_MS: '20' }) })
  const { http, ws } = await listen(t, app)
  const { page, errors, requests } = await open(t, `${http}/?user=alice`, { width: 960, height: 1560 })

  await page.getByText('Connected').waitFor()
  const message = page.getByRole('textbox', { name: 'Message' })
  t.ok(await message.evaluate((el) => el === (globalThis as any).document.activeElement), 'the message box has the focus')
  await message.pressSequentially(QUESTION)
  await page.keyboard.press('Enter')
  t.equal(await message.inputValue(), '', 'Enter sends and clears the box')
  await page.locator('.agw-run[data-status="completed"]').waitFor({ timeout: 30_000 })

  const view = await rendered(page)
  const events = await logged(app, view.runId)
  t.same(runProblems(events), [])
  const lookup = await app.eventStore.getRun(view.runId)
  t.equal(lookup.state === 'found' && lookup.meta.ownerId, 'alice', 'the page took its token from /dev/token?user=alice')
  checkTimeline(t, view, events)

  const kinds = view.entries.map((entry) => entry.type)
  t.equal(kinds[0], 'agent_started')
  t.equal(kinds.at(-1), 'agent_completed')
  const firstThought = kinds.indexOf('agent_thinking')
  const firstTool = kinds.indexOf('tool_executing')
  t.ok(firstThought > 0 && firstTool > firstThought, 'started, then thinking, then a tool card')
  t.ok(kinds.indexOf('agent_message') > firstTool, 'then the answer')
  const tools = view.entries.filter((entry) => entry.type === 'tool_executing')
  t.same(tools.map((entry) => [entry.status, entry.busy]), [['success', 'false'], ['success', 'false']], 'each tool card completed')
  t.match(tools[0]?.text, /calculator\s*success\s*[\d.]+ (ms|s)\s*Arguments\s*\{\s*"expression": "12 \* \(3 \+ 4\)"\s*\}\s*Result\s*\{[^}]*"value": 84/)
  t.match(tools[1]?.text, /convert_units\s*success.*Result.*3\.106855961/s)
  const terminal = events.at(-1)
  t.equal(view.answer, terminal?.type === 'agent_completed' ? (terminal.data.output as { answer: string }).answer : undefined, 'the final answer')
  t.match(view.entries.at(-1)?.text, /^Completed in [\d.]+ (ms|s)$/)
  t.equal(await page.locator('.agw-run .agw-status').textContent(), 'Completed')
  t.equal(await page.getByRole('button', { name: /^Cancel the run/ }).isVisible(), false, 'no cancel button once the run ended')

  const origin = new URL(http).host
  t.same(requests.filter((url) => new URL(url).host !== origin), [], 'nothing is loaded from anywhere else')
  t.ok(requests.includes(ws), 'the WebSocket goes to /ws next to the page')
  t.same(errors, [])

  const png = await page.screenshot()
  t.same([...png.subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], 'a PNG of the finished run')
  if (process.env.UPDATE_SCREENSHOT === '1') await writeFile(join(root, 'docs/demo.png'), png)
})

/** An agent that takes each step only when the test allows it, so a drop lands mid-run by construction. */
function steppedAgent (): { agent: Agent, allow: (steps: number) => void } {
  let allowance = 0
  let wake: (() => void) | undefined
  const step = async (): Promise<void> => {
    while (allowance === 0) await new Promise<void>((resolve) => { wake = resolve })
    allowance--
  }
  const agent: Agent = async ({ think, say, tools }) => {
    think('First I read the question.')
    await step()
    think('Arithmetic is a job for the calculator.')
    await step()
    await tools.call('calculator', { expression: '6 * 7' })
    await step()
    think('The calculator says 42.')
    await step()
    for (const piece of ['The ', 'answer ', 'is ', '42.']) {
      say(piece)
      await step()
    }
    return { answer: 'The answer is 42.' }
  }
  return { agent, allow: (steps) => { allowance += steps; wake?.() } }
}

t.test('the socket dropped from the server mid-run: the run finishes with no duplicated or missing entries', { skip }, async (t) => {
  const stepped = steppedAgent()
  const app = await buildApp(t, { env: testEnv({ APP_ENV: 'development', JWT_SECRET: '' }), agents: { stepped: stepped.agent }, tools: demoTools })
  const server = serverSockets(app)
  const { http } = await listen(t, app)
  const { page, errors } = await open(t, http)
  await page.getByText('Connected').waitFor()
  await page.getByRole('textbox', { name: 'Message' }).fill('What is 6 * 7?')
  await page.getByRole('button', { name: 'Send' }).click()

  // Each drop cuts the page off while the agent is held, then lets the agent go on while the page
  // is away: what it says meanwhile reaches the page only by re-subscribing after its last seq.
  for (const [shown, steps] of [[2, 2], [4, 1]] as const) {
    await page.locator('.agw-timeline > li').nth(shown - 1).waitFor()
    for (const socket of server.sockets) socket.terminate()
    stepped.allow(steps)
    await page.locator('.agw-connection[data-state="reconnecting"]').or(page.locator('.agw-connection[data-state="connecting"]')).waitFor()
    await page.locator('.agw-connection[data-state="open"]').waitFor()
  }
  stepped.allow(100)
  await page.locator('.agw-run[data-status="completed"]').waitFor()
  t.ok(server.opened() >= 3, `the page connected ${server.opened()} times`)
  const view = await rendered(page)
  const events = await logged(app, view.runId)
  checkTimeline(t, view, events)
  t.same(runProblems(events), [])
  t.equal(view.answer, 'The answer is 42.')
  t.same(view.entries.map((entry) => entry.type), ['agent_started', 'agent_thinking', 'agent_thinking', 'tool_executing', 'agent_thinking', 'agent_message', 'agent_completed'])
  t.equal(await page.locator('.agw-connection-text').textContent(), 'Connected')
  t.same(errors, [])
})

/** A tool that runs until the test lets it finish (or the run is cancelled): a slow run, without timing. */
function latchedAgent (): { agent: Agent, tool: ReturnType<typeof defineTool>, release: () => void } {
  let release = (): void => {}
  const tool = defineTool({
    name: 'slow_lookup',
    description: 'Looks something up, slowly',
    parameters: Type.Object({ query: Type.String() }),
    async execute ({ query }, { signal }) {
      await new Promise<void>((resolve, reject) => {
        release = resolve
        signal.addEventListener('abort', () => { reject(signal.reason as Error) })
      })
      return { query, found: 'it' }
    }
  })
  const agent: Agent = async ({ input, think, say, tools }) => {
    think('This needs the slow lookup.')
    const outcome = await tools.call('slow_lookup', { query: input.message })
    say(`Found ${String((outcome.result as { found?: string } | undefined)?.found)}.`)
    return { status: outcome.status }
  }
  return { agent, tool, release: () => { release() } }
}

t.test('a tool card spins while its tool runs; the cancel button ends a slow run', { skip }, async (t) => {
  const slow = latchedAgent()
  const app = await buildApp(t, { env: testEnv({ APP_ENV: 'development', JWT_SECRET: '' }), agents: { slow: slow.agent }, tools: [slow.tool] })
  const { http } = await listen(t, app)
  const { page, errors } = await open(t, http)
  const message = page.getByRole('textbox', { name: 'Message' })
  await page.getByText('Connected').waitFor()

  await message.fill('first')
  await message.press('Enter')
  const card = page.locator('.agw-tool').first()
  await card.locator('.agw-spinner').waitFor({ state: 'visible' })
  t.equal(await card.getAttribute('aria-busy'), 'true')
  t.equal(await card.locator('.agw-tool-status').textContent(), 'running…')
  t.match(await card.textContent(), /slow_lookup.*Arguments.*"query": "first"/s)
  slow.release()
  await page.locator('.agw-run[data-status="completed"]').waitFor()
  t.equal(await card.locator('.agw-spinner').isVisible(), false, 'the spinner stops')
  t.match(await card.textContent(), /success\s*[\d.]+ (ms|s).*Result.*"found": "it"/s)

  await message.fill('second')
  await message.press('Enter')
  const second = page.locator('.agw-run').nth(1)
  await second.locator('.agw-spinner').waitFor({ state: 'visible' })
  const cancel = second.getByRole('button', { name: 'Cancel the run “second”' })
  await cancel.focus()
  await page.keyboard.press('Enter')
  await second.locator('.agw-completed').waitFor()
  t.equal(await second.getAttribute('data-status'), 'cancelled')
  t.equal(await second.locator('.agw-status').textContent(), 'Cancelled')
  t.equal(await second.locator('.agw-tool').getAttribute('data-status'), 'cancelled', 'the open tool call ended cancelled')
  t.equal(await cancel.isVisible(), false)
  const view = await rendered(page, 1)
  const events = await logged(app, view.runId)
  t.match(events.at(-1), { type: 'agent_completed', data: { status: 'cancelled' } })
  checkTimeline(t, view, events)
  t.same(errors, [])
})

t.test('a tool that reports progress gets a progress bar on its card, updated as it goes', { skip }, async (t) => {
  const gates = [0, 1].map(() => { let open = (): void => {}; const opened = new Promise<void>((resolve) => { open = resolve }); return { opened, open } })
  const tool = defineTool({
    name: 'long_job',
    description: 'Works in steps and says how far it is',
    parameters: Type.Object({}),
    async execute (_args, { progress }) {
      progress(1, 4, 'reading')
      await gates[0]!.opened
      progress(3, 4)
      await gates[1]!.opened
      return { done: true }
    }
  })
  const agent: Agent = async ({ tools, say }) => {
    const outcome = await tools.call('long_job', {})
    say(outcome.status === 'success' ? 'Done.' : 'It failed.')
  }
  const app = await buildApp(t, { env: testEnv({ APP_ENV: 'development', JWT_SECRET: '', TOOL_PROGRESS_INTERVAL_MS: '0' }), agents: { agent }, tools: [tool] })
  const { http } = await listen(t, app)
  const { page, errors } = await open(t, http)
  await page.getByText('Connected').waitFor()
  await page.getByRole('textbox', { name: 'Message' }).fill('go')
  await page.keyboard.press('Enter')
  const bar = page.getByRole('progressbar', { name: 'Progress of long_job' })
  await bar.waitFor()
  const card = page.locator('.agw-tool').first()
  t.same([await bar.evaluate((el: any) => [el.value, el.max])], [[1, 4]])
  t.equal(await card.locator('.agw-progress-text').textContent(), '1 of 4 · reading')
  gates[0]!.open()
  await page.waitForFunction(() => (globalThis as any).document.querySelector('.agw-progress')?.value === 3)
  t.equal(await card.locator('.agw-progress-text').textContent(), '3 of 4')
  t.equal(await card.getAttribute('aria-busy'), 'true', 'still running')
  gates[1]!.open()
  await page.locator('.agw-run[data-status="completed"]').waitFor()
  t.equal(await card.getAttribute('data-status'), 'success')
  t.same(await bar.evaluate((el: any) => [el.value, el.max]), [4, 4], 'a call that succeeded shows a full bar')
  const view = await rendered(page)
  const events = await logged(app, view.runId)
  t.same(events.filter((event) => event.type === 'tool_progress').length, 2)
  checkTimeline(t, view, events)
  t.same(errors, [])
})

/** WCAG contrast ratio of an element's text colour against the first opaque background behind it. */
async function contrasts (page: Page, selectors: string[]): Promise<Array<{ selector: string, ratio: number }>> {
  return page.evaluate((list) => {
    const win = globalThis as any
    const rgb = (color: string): number[] => (color.match(/[\d.]+/g) ?? []).map(Number)
    const luminance = ([r = 0, g = 0, b = 0]: number[]): number => {
      const channel = (v: number): number => { const c = v / 255; return c <= 0.03928 ? c / 12.92 : ((c + 0.055) / 1.055) ** 2.4 }
      return 0.2126 * channel(r) + 0.7152 * channel(g) + 0.0722 * channel(b)
    }
    const background = (el: any): number[] => {
      for (let node = el; node !== null; node = node.parentElement) {
        const color = rgb(win.getComputedStyle(node).backgroundColor)
        if (color.length === 3 || color[3] === 1) return color
      }
      return [255, 255, 255]
    }
    return list.flatMap((selector) => [...win.document.querySelectorAll(selector)].slice(0, 1).map((el: any) => {
      const [a, b] = [luminance(rgb(win.getComputedStyle(el).color)), luminance(background(el))]
      return { selector, ratio: (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05) }
    }))
  }, selectors)
}

t.test('on a phone: everything fits, every control is labelled and usable from the keyboard, text is readable', { skip }, async (t) => {
  const app = await buildApp(t, { env: testEnv({ APP_ENV: 'development', JWT_SECRET: '' }) })
  const { http } = await listen(t, app)
  const phone = { width: 360, height: 640 }
  const { page, errors } = await open(t, http, phone)
  await page.getByText('Connected').waitFor()
  await page.keyboard.type('What is 6 * 7?')
  await page.keyboard.press('Shift+Enter')
  await page.keyboard.type('And 5 km in miles')
  t.equal(await page.getByRole('textbox', { name: 'Message' }).inputValue(), 'What is 6 * 7?\nAnd 5 km in miles', 'Shift+Enter adds a line')
  await page.keyboard.press('Tab')
  t.equal(await page.evaluate(() => (globalThis as any).document.activeElement.textContent), 'Send', 'Tab reaches the Send button')
  await page.keyboard.press('Enter')
  await page.locator('.agw-run[data-status="completed"]').waitFor()

  const layout = await page.evaluate(() => {
    const doc = (globalThis as any).document
    const box = (selector: string): { left: number, right: number, top: number, bottom: number } => doc.querySelector(selector).getBoundingClientRect()
    return { scrollWidth: doc.documentElement.scrollWidth, send: box('.agw-composer button'), message: box('#agw-message'), bar: box('.agw-bar'), run: box('.agw-run') }
  })
  t.ok(layout.scrollWidth <= phone.width, `no sideways scrolling (${layout.scrollWidth} px wide)`)
  for (const name of ['send', 'message', 'bar', 'run'] as const) {
    t.ok(layout[name].left >= 0 && layout[name].right <= phone.width, `${name} fits the width`)
  }
  t.ok(layout.send.bottom <= phone.height && layout.message.bottom <= phone.height, 'the composer stays on screen after a long run')

  for (const control of await page.locator('button, textarea, input').all()) {
    const name = await control.evaluate((el: any) => el.labels?.[0]?.textContent ?? el.getAttribute('aria-label') ?? el.textContent)
    t.ok(typeof name === 'string' && name.trim() !== '', `labelled: ${String(name)}`)
  }
  t.equal(await page.getByRole('status').textContent(), 'Connected', 'the connection indicator is a status region')

  const ratios = await contrasts(page, ['body', '.agw-intro', '.agw-question', '.agw-status', '.agw-label', '.agw-thought',
    '.agw-tool-status', '.agw-duration', '.agw-tool-detail dt', '.agw-tool-detail pre', '.agw-answer-text', '.agw-hint',
    '.agw-connection-text', '.agw-composer button', '.agw-composer label'])
  t.equal(ratios.length, 15, 'every checked element is on the page')
  for (const { selector, ratio } of ratios) t.ok(ratio >= 4.5, `${selector}: contrast ${ratio.toFixed(2)}:1`)
  t.same(errors, [])
})

t.test('outside development the page asks the embedding app for its token', { skip }, async (t) => {
  const app = await buildApp(t, { env: testEnv({ APP_ENV: 'production' }) })
  const { http } = await listen(t, app)
  const bare = await open(t, http)
  await bare.page.getByRole('alert').waitFor()
  t.match(await bare.page.getByRole('alert').textContent(), /This page has no token\..*window\.agentGatewayToken/)
  t.equal(await bare.page.getByRole('button', { name: 'Send' }).isDisabled(), true)
  t.equal(await bare.page.locator('.agw-connection').getAttribute('data-state'), 'closed')
  t.match(bare.errors, [/404/], 'the only error is the 404 of /dev/token')

  const embedded = await (await browser()).newPage()
  t.teardown(() => embedded.close())
  const token = tokenFor('carol')
  let calls = 0
  await embedded.exposeFunction('hostToken', () => { calls++; return token })
  await embedded.addInitScript('window.agentGatewayToken = () => window.hostToken()')
  await embedded.goto(http)
  await embedded.getByText('Connected').waitFor()
  await embedded.getByRole('textbox', { name: 'Message' }).fill('What is 6 * 7?')
  await embedded.keyboard.press('Enter')
  await embedded.locator('.agw-run[data-status="completed"]').waitFor()
  const runId = await embedded.locator('.agw-run').getAttribute('data-run-id') as string
  const lookup = await app.eventStore.getRun(runId)
  t.equal(lookup.state === 'found' && lookup.meta.ownerId, 'carol', "the run is the embedding app's user's")
  t.ok(calls >= 1)
})
