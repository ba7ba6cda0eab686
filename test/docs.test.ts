// The docs cite results files, sections of each other and source files by relative link; a file
// renamed or a heading reworded breaks them silently on GitHub. Every such link must resolve.
import { existsSync } from 'node:fs'
import { readFile, readdir } from 'node:fs/promises'
import { dirname, join } from 'node:path'
import t from 'tap'
import { repoRoot } from '../src/cli/docs.js'

/** Fenced code blocks: what is in them is an example, not a link or a heading. */
const FENCED = /```[\s\S]*?```/g

/** Text without its fenced blocks and inline code spans. */
function prose (markdown: string): string {
  return markdown.replace(FENCED, '').replace(/`[^`\n]*`/g, '')
}

/** GitHub's anchor for a heading: lower case, punctuation dropped, spaces as hyphens. */
function headingAnchor (heading: string): string {
  return heading.trim().toLowerCase().replace(/[^\p{L}\p{N}\s_-]/gu, '').replace(/\s/g, '-')
}

/** The anchors of a Markdown file's headings; a repeated heading gets -1, -2, … as on GitHub. */
function anchorsOf (markdown: string): Set<string> {
  const seen = new Map<string, number>()
  const anchors = new Set<string>()
  for (const line of markdown.replace(FENCED, '').split('\n')) {
    const heading = /^#{1,6}\s+(.*)$/.exec(line)?.[1]
    if (heading === undefined) continue
    const anchor = headingAnchor(heading)
    const times = seen.get(anchor) ?? 0
    seen.set(anchor, times + 1)
    anchors.add(times === 0 ? anchor : `${anchor}-${times}`)
  }
  return anchors
}

/** Relative links of a Markdown text: [text](target), targets without a scheme. */
function relativeLinks (markdown: string): string[] {
  return [...prose(markdown).matchAll(/\]\(([^)\s]+)\)/g)].map((match) => match[1] as string).filter((target) => !/^[a-z][a-z0-9+.-]*:/i.test(target))
}

t.test('headings make the anchors GitHub makes', async (t) => {
  t.equal(headingAnchor('On the supported runtimes: Node.js 22 and 24'), 'on-the-supported-runtimes-nodejs-22-and-24')
  t.equal(headingAnchor('Run start and end, without sockets (2026-12-04)'), 'run-start-and-end-without-sockets-2026-12-04')
  t.equal(headingAnchor('`npm run bench` — against raw ws'), 'npm-run-bench--against-raw-ws')
  t.same([...anchorsOf('# A\n\n## A\n```\n# not a heading\n```\n### B b')], ['a', 'a-1', 'b-b'])
  t.same(relativeLinks('[x](docs/a.md#b) [y](https://example.com) `[z](no.md)` [w](mailto:a@b.c)'), ['docs/a.md#b'])
})

t.test('every relative link in README.md and docs/ resolves, to its heading too', async (t) => {
  const files = ['README.md', ...(await readdir(join(repoRoot, 'docs'))).filter((name) => name.endsWith('.md')).map((name) => `docs/${name}`)]
  const anchors = new Map<string, Set<string>>()
  const anchorsIn = async (file: string): Promise<Set<string>> => {
    let found = anchors.get(file)
    if (found === undefined) {
      found = anchorsOf(await readFile(join(repoRoot, file), 'utf8'))
      anchors.set(file, found)
    }
    return found
  }
  let links = 0
  for (const file of files) {
    for (const target of relativeLinks(await readFile(join(repoRoot, file), 'utf8'))) {
      links++
      const [path = '', anchor] = target.split('#')
      const linked = path === '' ? file : join(dirname(file), decodeURIComponent(path))
      if (!existsSync(join(repoRoot, linked))) {
        t.fail(`${file}: ${target} names no file`)
        continue
      }
      if (anchor !== undefined && anchor !== '' && linked.endsWith('.md') && !(await anchorsIn(linked)).has(anchor)) {
        t.fail(`${file}: ${target} names no heading of ${linked}`)
      }
    }
  }
  // The docs cite well over a hundred results files and sections: a parser that found none would pass vacuously.
  t.ok(links > 150, `${links} links checked`)
})
