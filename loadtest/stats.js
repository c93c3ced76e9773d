// k6: dashboards polling the stats endpoints. Each VU is one dashboard: every POLL seconds it
// fetches totals, by-campaign, by-source, the time series and one link's stats for the 30-day
// window, the way a dashboard page refreshes. Per-endpoint latency is tagged by name.
// Run through loadtest/stats.sh, or by hand:
//   SLUICE_URL=… SLUICE_SK=sk_… SLUICE_LINK=seed-0 k6 run loadtest/stats.js
import http from 'k6/http';
import { check, sleep } from 'k6';

export const options = {
  scenarios: {
    dashboards: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 200),
      duration: __ENV.DURATION || '30s',
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
  // Declared so the summary reports each endpoint's latency on its own (no pass/fail here:
  // targets live in the docs, measured).
  thresholds: Object.fromEntries(
    ['totals', 'by-campaign', 'by-source', 'timeseries', 'link'].map((n) => [`http_req_duration{name:${n}}`, ['max>=0']]),
  ),
};

const base = __ENV.SLUICE_URL;
const params = (name) => ({ headers: { Authorization: `Bearer ${__ENV.SLUICE_SK}` }, tags: { name } });
const endpoints = [
  ['totals', '/v1/attribution/stats?window=30d'],
  ['by-campaign', '/v1/attribution/stats/by-campaign?window=30d'],
  ['by-source', '/v1/attribution/stats/by-source?window=30d'],
  ['timeseries', '/v1/attribution/stats/timeseries?window=30d'],
  ['link', `/v1/links/${__ENV.SLUICE_LINK}/stats?window=30d`],
];

export default function () {
  for (const [name, path] of endpoints) {
    const res = http.get(base + path, params(name));
    check(res, { 'status 200': (r) => r.status === 200 });
  }
  sleep(Number(__ENV.POLL || 1));
}
