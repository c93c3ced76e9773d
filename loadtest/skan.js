// k6: SKAdNetwork postbacks at the developer-copy receiver, each with its own transaction id.
// The body is Apple's 4.0 example (tests/data/apple_postbacks.json) with the id replaced, so
// every postback is read, its signature checked (and found wrong: the id is signed), its id
// taken and its row stored durably before the 200 — the whole path of a real postback.
// Run through loadtest/skan.sh.
import http from 'k6/http';
import { check } from 'k6';

export const options = {
  scenarios: {
    postbacks: { executor: 'constant-vus', vus: Number(__ENV.VUS || 64), duration: __ENV.DURATION || '20s' },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

const example = JSON.parse(open('../tests/data/apple_postbacks.json')).find((e) => e.name === '4.0 fine').postback;
const url = `${__ENV.SLUICE_URL}/.well-known/skadnetwork/report-attribution/`;
const params = { headers: { 'Content-Type': 'application/json' }, responseType: 'none' };

export default function () {
  const body = JSON.stringify({ ...example, 'transaction-id': `${__VU}-${__ITER}-${__ENV.RUN}` });
  const r = http.post(url, body, params);
  check(r, { '200': (res) => res.status === 200 });
}
