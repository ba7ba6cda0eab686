// The demo page (GET /): a chat with the agent that shows each run live, through the client
// library. Where the token comes from, in this order (docs/client.md):
//   1. `window.agentGatewayToken()`, when the app embedding this page defines it;
//   2. `GET dev/token` next to the page, which exists only when the gateway runs with
//      APP_ENV=development (`?user=alice` on the page's URL picks the user).
// The WebSocket is `ws` next to the page unless the embedding app sets `window.agentGatewayUrl`.
import { createClient, type StateChange, type TokenSource } from '../client/index.js'
import { RunView, h } from './timeline.js'

declare global {
  interface Window {
    agentGatewayToken?: () => string | Promise<string>
    agentGatewayUrl?: string
  }
}

const EXAMPLES = [
  'What is 12 * (3 + 4)? And convert 5 km to miles',
  'Convert 100 F to C, then tell me about Mount Everest',
  'How many words are in "the quick brown fox jumps over the lazy dog"?'
]

function socketUrl (): string {
  if (window.agentGatewayUrl !== undefined) return window.agentGatewayUrl
  const url = new URL('ws', window.location.href)
  url.protocol = url.protocol === 'https:' ? 'wss:' : 'ws:'
  return url.toString()
}

async function fetchDevToken (): Promise<string | undefined> {
  const user = new URLSearchParams(window.location.search).get('user') ?? 'dev'
  const response = await fetch(new URL(`dev/token?user=${encodeURIComponent(user)}`, window.location.href))
  if (response.status === 404) return undefined
  if (!response.ok) throw new Error(`GET /dev/token answered ${response.status}`)
  return ((await response.json()) as { token: string }).token
}

/** The token source, or undefined when this page has no way to get a token. */
async function tokenSource (): Promise<TokenSource | undefined> {
  const hostToken = window.agentGatewayToken
  if (typeof hostToken === 'function') return () => hostToken()
  let first = await fetchDevToken()
  if (first === undefined) return undefined
  // The first token is used for the first connection; later calls (reconnects, refreshes) fetch anew.
  return async () => {
    const token = first ?? await fetchDevToken()
    first = undefined
    if (token === undefined) throw new Error('GET /dev/token is gone')
    return token
  }
}

function describeState (change: StateChange): string {
  switch (change.state) {
    case 'connecting': return 'Connecting…'
    case 'open': return 'Connected'
    case 'reconnecting': {
      const seconds = ((change.delayMs ?? 0) / 1000).toFixed(1)
      return `Connection lost, reconnecting in ${seconds} s (attempt ${change.attempt ?? 1})…`
    }
    case 'closed': return `Disconnected${change.error === undefined ? '' : `: ${change.error.message}`}`
  }
}

function mount (root: HTMLElement): { runs: HTMLElement, form: HTMLFormElement, input: HTMLTextAreaElement, connection: HTMLElement } {
  const connection = h('p', { class: 'agw-connection', role: 'status', 'data-state': 'connecting' },
    h('span', { class: 'agw-dot', 'aria-hidden': 'true' }), h('span', { class: 'agw-connection-text' }, 'Connecting…'))
  const runs = h('section', { class: 'agw-runs', role: 'log', 'aria-label': 'Runs', 'aria-live': 'polite' },
    h('p', { class: 'agw-intro' },
      'Ask the demo agent something. Each run shows its reasoning, its tool calls and its answer as they happen. Try: ',
      ...EXAMPLES.flatMap((example, index) => [index === 0 ? '' : ' · ', h('q', {}, example)])))
  const input = h('textarea', { id: 'agw-message', name: 'message', rows: '2', required: '', autocomplete: 'off', 'aria-describedby': 'agw-hint' })
  const form = h('form', { class: 'agw-composer' },
    h('label', { for: 'agw-message' }, 'Message'),
    input,
    h('button', { type: 'submit' }, 'Send'),
    h('p', { id: 'agw-hint', class: 'agw-hint' }, 'Enter sends, Shift+Enter adds a line.'))
  root.replaceChildren(
    h('header', { class: 'agw-bar' }, h('h1', {}, 'agent-gateway'), connection),
    h('main', { class: 'agw-main' }, runs),
    form)
  return { runs, form, input, connection }
}

async function start (root: HTMLElement): Promise<void> {
  const { runs, form, input, connection } = mount(root)
  const showState = (change: StateChange): void => {
    connection.dataset.state = change.state
    connection.querySelector('.agw-connection-text')?.replaceChildren(describeState(change))
  }
  const token = await tokenSource().catch((err: unknown) => {
    showState({ state: 'closed' })
    throw err
  })
  if (token === undefined) {
    showState({ state: 'closed' })
    runs.append(h('p', { class: 'agw-notice', role: 'alert' },
      'This page has no token. In development the gateway hands one out at /dev/token; ' +
      'otherwise the app embedding this page defines window.agentGatewayToken (see docs/client.md).'))
    form.querySelector('button')?.setAttribute('disabled', '')
    return
  }
  const client = createClient({ url: socketUrl(), token })
  client.onStateChange(showState)

  async function ask (question: string): Promise<void> {
    const view = new RunView(question)
    runs.append(view.element)
    view.element.scrollIntoView({ block: 'end' })
    try {
      const run = await client.run(question)
      view.follow(run)
      for await (const event of run) {
        view.render(event)
        view.element.scrollIntoView({ block: 'end' })
      }
    } catch (err) {
      view.fail(err as Error)
    }
  }

  form.addEventListener('submit', (event) => {
    event.preventDefault()
    const question = input.value.trim()
    if (question === '') return
    input.value = ''
    void ask(question)
  })
  input.addEventListener('keydown', (event) => {
    if (event.key === 'Enter' && !event.shiftKey && !event.isComposing) {
      event.preventDefault()
      form.requestSubmit()
    }
  })
  input.focus()
}

const root = document.getElementById('agent-gateway')
if (root !== null) {
  start(root).catch((err: unknown) => {
    root.append(h('p', { class: 'agw-notice', role: 'alert' }, `The page could not start: ${(err as Error).message}`))
  })
}
