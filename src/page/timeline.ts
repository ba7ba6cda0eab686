// One run on the page: the question, a status, a cancel button and a timeline that grows with
// the run's events — started, thinking steps, tool cards (a spinner while the tool runs, and a
// progress bar when it reports progress; its arguments, result or error and duration when it is
// done), the answer as it streams, completed. Every element made from an event carries that
// event's seq (`data-seq`; a tool card also `data-completed-seq`, and `data-progress-seqs` for its
// progress events), so a test can check that each event was rendered exactly once, in order.
import type { GatewayError, Run, RunEvent, RunEventOf } from '../client/index.js'

type Attributes = Record<string, string>

/** An element with attributes and children; text is always set as text, never parsed as HTML. */
export function h<K extends keyof HTMLElementTagNameMap> (tag: K, attributes: Attributes = {}, ...children: Array<Node | string>): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag)
  for (const [name, value] of Object.entries(attributes)) element.setAttribute(name, value)
  element.append(...children)
  return element
}

export function formatDuration (ms: number): string {
  if (ms >= 1000) return `${(ms / 1000).toFixed(ms >= 10_000 ? 0 : 1)} s`
  return `${ms < 10 ? ms.toFixed(1) : Math.round(ms)} ms`
}

function json (value: unknown): string {
  return JSON.stringify(value, null, 2) ?? 'undefined'
}

const STATUS_TEXT: Record<string, string> = {
  starting: 'Starting…',
  running: 'Running',
  cancelling: 'Cancelling…',
  completed: 'Completed',
  failed: 'Failed',
  cancelled: 'Cancelled',
  error: 'Not followed'
}

interface ToolCard {
  readonly element: HTMLLIElement
  readonly head: HTMLElement
  readonly tool: string
  progress?: { readonly bar: HTMLProgressElement, readonly label: HTMLElement }
}

export class RunView {
  readonly element: HTMLElement
  readonly #timeline: HTMLOListElement
  readonly #status: HTMLElement
  readonly #cancel: HTMLButtonElement
  readonly #tools = new Map<string, ToolCard>()
  #answer: { messageId: string, text: HTMLElement } | undefined
  #run: Run | undefined

  constructor (question: string) {
    this.#status = h('span', { class: 'agw-status', 'data-status': 'starting' }, STATUS_TEXT.starting as string)
    this.#cancel = h('button', { type: 'button', class: 'agw-cancel', 'aria-label': `Cancel the run “${question.slice(0, 60)}”` }, 'Cancel')
    this.#cancel.disabled = true
    this.#cancel.addEventListener('click', () => { this.#requestCancel() })
    this.#timeline = h('ol', { class: 'agw-timeline', 'aria-label': 'What the agent did' })
    this.element = h('article', { class: 'agw-run', 'aria-label': `Run: ${question.slice(0, 80)}` },
      h('header', { class: 'agw-run-head' },
        h('p', { class: 'agw-question' }, h('span', { class: 'agw-visually-hidden' }, 'You asked: '), question),
        this.#status,
        this.#cancel),
      this.#timeline)
  }

  /** The run was accepted: cancelling becomes possible. */
  follow (run: Run): void {
    this.#run = run
    this.element.dataset.runId = run.runId
    this.#setStatus('running')
    this.#cancel.disabled = false
  }

  render (event: RunEvent): void {
    switch (event.type) {
      case 'agent_started':
        this.#entry(event, 'started', h('span', { class: 'agw-label' }, 'Started'), ` agent ${event.data.agent}`)
        return
      case 'agent_thinking':
        this.#entry(event, 'thinking',
          h('span', { class: 'agw-label' }, event.data.step === undefined ? 'Thinking' : `Thinking · step ${event.data.step}`),
          h('p', { class: 'agw-thought' }, event.data.thought))
        return
      case 'tool_executing':
        this.#toolStarted(event)
        return
      case 'tool_progress':
        this.#toolProgress(event)
        return
      case 'tool_completed':
        this.#toolCompleted(event)
        return
      case 'agent_message':
        this.#message(event)
        return
      case 'agent_completed':
        this.#completed(event)
    }
  }

  /** The run cannot be shown to its end (not started, or no longer followable). */
  fail (error: GatewayError | Error): void {
    const code = 'code' in error ? `${error.code}: ` : ''
    this.#timeline.append(h('li', { class: 'agw-entry agw-problem', role: 'alert' }, `${code}${error.message}`))
    this.#setStatus('error')
    this.#cancel.disabled = true
  }

  #entry (event: RunEvent, kind: string, ...children: Array<Node | string>): HTMLLIElement {
    const item = h('li', { class: `agw-entry agw-${kind}`, 'data-type': event.type, 'data-seq': String(event.seq) }, ...children)
    this.#timeline.append(item)
    // Text that continues an answer starts a new paragraph once anything else came in between.
    if (event.type !== 'agent_message') this.#answer = undefined
    return item
  }

  #toolStarted (event: RunEventOf<'tool_executing'>): void {
    const head = h('p', { class: 'agw-tool-head' },
      h('span', { class: 'agw-spinner', 'aria-hidden': 'true' }),
      h('span', { class: 'agw-label' }, 'Tool'), ' ',
      h('strong', {}, event.data.tool), ' ',
      h('span', { class: 'agw-tool-status' }, 'running…'))
    const item = this.#entry(event, 'tool', head,
      h('dl', { class: 'agw-tool-detail' }, h('dt', {}, 'Arguments'), h('dd', {}, h('pre', {}, json(event.data.args)))))
    item.setAttribute('aria-busy', 'true')
    item.dataset.status = 'running'
    this.#tools.set(event.data.toolCallId, { element: item, head, tool: event.data.tool })
  }

  #toolProgress (event: RunEventOf<'tool_progress'>): void {
    const card = this.#tools.get(event.data.toolCallId)
    if (card === undefined) return
    const { progress, total, message } = event.data
    if (card.progress === undefined) {
      const bar = h('progress', { class: 'agw-progress', 'aria-label': `Progress of ${card.tool}` })
      const label = h('span', { class: 'agw-progress-text' })
      card.head.after(h('div', { class: 'agw-tool-progress' }, bar, label))
      card.progress = { bar, label }
    }
    const { bar, label } = card.progress
    // Without a total only the growth is known: the bar shows activity, the label the count.
    if (total !== undefined && total > 0) {
      bar.max = total
      bar.value = Math.min(Math.max(progress, 0), total)
    } else {
      bar.removeAttribute('value')
    }
    label.textContent = `${total === undefined ? String(progress) : `${progress} of ${total}`}${message === undefined ? '' : ` · ${message}`}`
    const seqs = card.element.dataset.progressSeqs
    card.element.dataset.progressSeqs = seqs === undefined ? String(event.seq) : `${seqs} ${event.seq}`
  }

  #toolCompleted (event: RunEventOf<'tool_completed'>): void {
    const card = this.#tools.get(event.data.toolCallId)
    if (card === undefined) return
    const { element, head } = card
    element.dataset.completedSeq = String(event.seq)
    element.dataset.status = event.data.status
    element.setAttribute('aria-busy', 'false')
    if (card.progress !== undefined && event.data.status === 'success' && card.progress.bar.hasAttribute('value')) card.progress.bar.value = card.progress.bar.max
    head.querySelector('.agw-tool-status')?.replaceChildren(event.data.status)
    head.append(' ', h('span', { class: 'agw-duration' }, formatDuration(event.data.durationMs)))
    const detail = element.querySelector('dl') as HTMLDListElement
    if (event.data.error !== undefined) {
      detail.append(h('dt', {}, 'Error'), h('dd', {}, h('pre', {}, `${event.data.error.code}: ${event.data.error.message}`)))
    } else if ('result' in event.data) {
      detail.append(h('dt', {}, 'Result'), h('dd', {}, h('pre', {}, json(event.data.result))))
    }
    this.#answer = undefined
  }

  #message (event: RunEventOf<'agent_message'>): void {
    if (this.#answer?.messageId !== event.data.messageId) {
      const text = h('p', { class: 'agw-answer-text' })
      const item = this.#entry(event, 'answer', h('span', { class: 'agw-label' }, 'Answer'), text)
      // The entry's own seq is its first delta's; each delta also marks its own span.
      item.removeAttribute('data-seq')
      item.dataset.messageId = event.data.messageId
      this.#answer = { messageId: event.data.messageId, text }
    }
    this.#answer.text.append(h('span', { 'data-seq': String(event.seq) }, event.data.delta))
  }

  #completed (event: RunEventOf<'agent_completed'>): void {
    const { status, durationMs, error } = event.data
    this.#entry(event, 'completed',
      h('span', { class: 'agw-label' }, STATUS_TEXT[status] as string),
      ` in ${formatDuration(durationMs)}`,
      ...(error === undefined ? [] : [h('p', { class: 'agw-error' }, `${error.code}: ${error.message}`)]))
    this.element.dataset.status = status
    this.#setStatus(status)
    this.#cancel.disabled = true
  }

  #requestCancel (): void {
    const run = this.#run
    if (run === undefined || run.ended) return
    this.#cancel.disabled = true
    this.#setStatus('cancelling')
    // The run's own terminal event updates the view; a run that cannot be followed shows why.
    run.cancel().catch(() => {})
  }

  #setStatus (status: string): void {
    this.#status.dataset.status = status
    this.#status.textContent = STATUS_TEXT[status] ?? status
  }
}
