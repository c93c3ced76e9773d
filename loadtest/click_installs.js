// k6: click-id installs at a constant arrival rate against POST /v1/attribution/install, each
// with a fresh install id and a click id never used before (a click attributes one install),
// taken from the file loadtest/click_installs.sh wrote.
import http from 'k6/http';
import { check } from 'k6';
import { SharedArray } from 'k6/data';
import exec from 'k6/execution';

const ids = new SharedArray('click ids', () => open(__ENV.CLICK_IDS).split('\n').filter((l) => l));
export const options = {
  scenarios: {
    installs: {
      executor: 'constant-arrival-rate',
      rate: Number(__ENV.RATE || 2000),
      timeUnit: '1s',
      duration: __ENV.DURATION || '30s',
      preAllocatedVUs: 64,
      maxVUs: 256,
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};
const url = `${__ENV.SLUICE_URL}/v1/attribution/install`;
const params = { headers: { 'Content-Type': 'application/json', Authorization: `Bearer ${__ENV.SLUICE_SK}` } };

export default function () {
  const n = exec.scenario.iterationInTest;
  const body = `{"install_id":"ci-${__ENV.RUN}-${n}","platform":"android","click_id":"${ids[n % ids.length]}"}`;
  const resp = http.post(url, body, params);
  check(resp, { 'attributed by click id': (r) => r.status === 200 && r.json('match_type') === 'click_id' });
}
