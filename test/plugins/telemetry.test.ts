// The delivery-latency histogram is a tally of our own (no allocation per observation): it must
// read exactly as prom-client's own Histogram reads for the same observations, in both formats.
import t from 'tap'
import { Histogram, Registry } from 'prom-client'
import { TallyHistogram } from '../../src/plugins/telemetry.js'

const BUCKETS = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5]
// On the bounds, between them, below the first, above the last, zero.
const OBSERVED = [0, 0.0001, 0.0005, 0.0007, 0.001, 0.003, 0.01, 0.02, 0.1, 0.3, 1, 2.5, 2.6, 90, 0.0049, 0.0049]

type ContentType = typeof Registry.PROMETHEUS_CONTENT_TYPE
function registry (contentType: string): Registry {
  const made = new Registry()
  made.setContentType(contentType as ContentType)
  return made
}

function pair (contentType: string): { ours: Registry, theirs: Registry, tally: TallyHistogram, reference: Histogram } {
  const ours = registry(contentType)
  const theirs = registry(contentType)
  const tally = new TallyHistogram('agw_x_seconds', 'a histogram', BUCKETS)
  ours.registerMetric(tally as unknown as Parameters<Registry['registerMetric']>[0])
  const reference = new Histogram({ name: 'agw_x_seconds', help: 'a histogram', buckets: BUCKETS, registers: [theirs] })
  return { ours, theirs, tally, reference }
}

/** The samples of a registry's JSON form: name, labels and value of each. */
async function samples (registry: Registry): Promise<unknown> {
  return (await registry.getMetricsAsJSON()).map((metric) => ({
    name: metric.name,
    type: metric.type,
    values: metric.values.map((v) => ({ metricName: (v as { metricName?: string }).metricName, labels: v.labels, value: v.value }))
  }))
}

for (const contentType of [Registry.PROMETHEUS_CONTENT_TYPE, Registry.OPENMETRICS_CONTENT_TYPE]) {
  t.test(`the tally histogram reads as prom-client's Histogram (${contentType.split(';')[0]!})`, async (t) => {
    const { ours, theirs, tally, reference } = pair(contentType)
    t.equal(await ours.metrics(), await theirs.metrics(), 'before any observation')
    for (const value of OBSERVED) {
      tally.observe(value)
      reference.observe(value)
    }
    const text = await ours.metrics()
    t.equal(text, await theirs.metrics(), 'after the observations')
    t.match(text, /agw_x_seconds_bucket\{le="\+Inf"\} 16/)
    t.match(text, /agw_x_seconds_bucket\{le="0.005"\} 8/)
    t.same(await samples(ours), await samples(theirs), 'the JSON form too')
    const observed = await ours.metrics()
    ours.resetMetrics()
    // prom-client drops an unlabelled histogram's series on reset; ours reads as new again.
    t.equal(await ours.metrics(), (await pair(contentType).ours.metrics()), 'after a reset, as before any observation')
    t.not(await ours.metrics(), observed, "the observations are gone")
  })
}
