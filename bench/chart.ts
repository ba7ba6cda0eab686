// The connection-scaling picture of docs/performance.md: an SVG generated from the summary of a
// `npm run bench:scale` run, one panel per figure, connections on the x axis, one line per target.
//   node dist-dev/bench/chart.js bench/results/scale-<date>.json docs/connection-scaling.svg
import { readFileSync, writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

interface Stat { readonly median: number }
type Summary = Record<string, Record<string, Record<string, Stat>>>

export interface Panel {
  readonly key: string
  readonly title: string
  /** Scales the stored value to the unit of the title. */
  readonly scale?: number
}

export const PANELS: readonly Panel[] = [
  { key: 'rssPerConnection', title: 'idle RSS per connection (KiB)', scale: 1 / 1024 },
  { key: 'cpuUsPerEvent@1s', title: 'CPU per event at 1 event/s (µs)' },
  { key: 'p99Ms@1s', title: 'p99 latency at 1 event/s (ms)' },
  { key: 'handshakesPerSec', title: 'handshakes per second' }
]

const COLOURS: Readonly<Record<string, string>> = { gateway: '#1f6feb', 'raw-ws': '#8b949e' }
const WIDTH = 300
const HEIGHT = 200
const MARGIN = { left: 48, right: 12, top: 28, bottom: 30 }

const esc = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;')
const short = (value: number): string => (value >= 1000 ? `${+(value / 1000).toFixed(1)}k` : value >= 10 ? value.toFixed(0) : value.toFixed(value >= 1 ? 1 : 2))

/** The SVG of `summary` (workloads named scale-<connections>), `note` printed under the panels. */
export function scalingSvg (summary: Summary, note: string): string {
  const sizes = Object.keys(summary).filter((name) => name.startsWith('scale-')).map((name) => Number(name.slice(6))).sort((a, b) => a - b)
  const targets = [...new Set(Object.values(summary).flatMap((byTarget) => Object.keys(byTarget)))]
  const parts: string[] = []
  PANELS.forEach((panel, index) => {
    const x0 = (index % 2) * (WIDTH + 20)
    const y0 = Math.floor(index / 2) * (HEIGHT + 10)
    const series = targets.map((target) => ({
      target,
      points: sizes.flatMap((size) => {
        const value = summary[`scale-${size}`]?.[target]?.[panel.key]?.median
        return value === undefined || !Number.isFinite(value) ? [] : [{ size, value: value * (panel.scale ?? 1) }]
      })
    }))
    const maxValue = Math.max(1e-9, ...series.flatMap((s) => s.points.map((p) => p.value))) * 1.1
    const maxSize = Math.max(1, ...sizes)
    const px = (size: number): number => x0 + MARGIN.left + (size / maxSize) * (WIDTH - MARGIN.left - MARGIN.right)
    const py = (value: number): number => y0 + HEIGHT - MARGIN.bottom - (value / maxValue) * (HEIGHT - MARGIN.top - MARGIN.bottom)
    parts.push(`<text x="${x0 + MARGIN.left}" y="${y0 + 16}" font-size="12" font-weight="bold">${esc(panel.title)}</text>`)
    parts.push(`<line x1="${px(0)}" y1="${py(0)}" x2="${px(maxSize)}" y2="${py(0)}" stroke="#444"/><line x1="${px(0)}" y1="${py(0)}" x2="${px(0)}" y2="${py(maxValue)}" stroke="#444"/>`)
    for (const fraction of [0.5, 1]) parts.push(`<text x="${px(0) - 4}" y="${py(maxValue * fraction / 1.1) + 4}" font-size="10" text-anchor="end">${short(maxValue * fraction / 1.1)}</text>`)
    for (const size of sizes) parts.push(`<text x="${px(size)}" y="${py(0) + 14}" font-size="10" text-anchor="middle">${short(size)}</text>`)
    for (const { target, points } of series) {
      const colour = COLOURS[target] ?? '#d29922'
      if (points.length > 1) parts.push(`<polyline fill="none" stroke="${colour}" stroke-width="2" points="${points.map((p) => `${px(p.size).toFixed(1)},${py(p.value).toFixed(1)}`).join(' ')}"/>`)
      for (const p of points) parts.push(`<circle cx="${px(p.size).toFixed(1)}" cy="${py(p.value).toFixed(1)}" r="3" fill="${colour}"/>`)
    }
  })
  const height = Math.ceil(PANELS.length / 2) * (HEIGHT + 10) + 40
  const legend = targets.map((target, i) => `<rect x="${10 + i * 110}" y="${height - 30}" width="12" height="12" fill="${COLOURS[target] ?? '#d29922'}"/><text x="${26 + i * 110}" y="${height - 20}" font-size="11">${esc(target === 'raw-ws' ? 'raw ws' : target)}</text>`)
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${2 * WIDTH + 20}" height="${height}" font-family="sans-serif" viewBox="0 0 ${2 * WIDTH + 20} ${height}">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    ...parts,
    ...legend,
    `<text x="240" y="${height - 20}" font-size="10" fill="#555">${esc(note)}</text>`,
    '</svg>',
    ''
  ].join('\n')
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const [input, output] = process.argv.slice(2)
  if (input === undefined || output === undefined) throw new Error('usage: chart.js <scale results.json> <out.svg>')
  const report = JSON.parse(readFileSync(input, 'utf8')) as { summary: Summary, date: string, mode: string }
  writeFileSync(output, scalingSvg(report.summary, `x: connections · ${report.mode} run of ${report.date.slice(0, 10)} · medians`))
}
