// k6: the redirect scenarios of loadtest/compare.sh, for users who load-test with k6.
// Saturation: VUS connections each clicking as fast as answers come back (compare.sh runs
// wrk at 64 and 256). Fixed rate: RATE clicks/s from up to VUS connections (compare.sh runs oha
// at half nginx's peak), so the latency percentiles are not hidden by a slow server slowing the
// load (no coordinated omission). Redirects are not followed: each iteration is one click and
// must be answered with a 302.
// Run through loadtest/redirect.sh, or by hand against any link:
//   URL=http://127.0.0.1:8080/CODE VUS=64 DURATION=10s k6 run loadtest/redirect.js
//   URL=http://127.0.0.1:8080/CODE VUS=64 RATE=20000 DURATION=10s k6 run loadtest/redirect.js
import http from 'k6/http';
import { check } from 'k6';

const vus = Number(__ENV.VUS || 64);
const duration = __ENV.DURATION || '10s';
const rate = Number(__ENV.RATE || 0);

export const options = {
  scenarios: {
    clicks: rate > 0
      ? {
        executor: 'constant-arrival-rate',
        rate,
        timeUnit: '1s',
        duration,
        preAllocatedVUs: vus,
        maxVUs: vus,
      }
      : { executor: 'constant-vus', vus, duration },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(99)', 'p(99.9)', 'max'],
  discardResponseBodies: true,
};

const params = {
  redirects: 0,
  headers: {
    'User-Agent': 'Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1',
  },
};

export default function () {
  const res = http.get(`${__ENV.URL}?sub1=k6`, params);
  check(res, { '302 with a Location': (r) => r.status === 302 && !!r.headers.Location });
}
