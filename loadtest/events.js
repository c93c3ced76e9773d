// k6: server-to-server event batches of 1,000 events each against POST /v1/events.
// Every iteration sends fresh event ids (UUIDv4: iteration, run and VU in the id), so each
// event is new and is stored; installation ids cycle over 100 installs the driver reported.
// Run through loadtest/events.sh, or by hand:
//   SLUICE_URL=http://127.0.0.1:8080 SLUICE_TENANT=t_… SLUICE_SK=sk_… k6 run loadtest/events.js
import http from 'k6/http';
import encoding from 'k6/encoding';
import { check } from 'k6';

const BATCH = 1000;
export const options = {
  scenarios: {
    batches: {
      executor: 'constant-vus',
      vus: Number(__ENV.VUS || 128),
      duration: __ENV.DURATION || '20s',
    },
  },
  summaryTrendStats: ['avg', 'p(50)', 'p(95)', 'p(99)', 'max'],
};

const url = `${__ENV.SLUICE_URL}/v1/events`;
const params = {
  headers: {
    'Content-Type': 'application/json',
    Authorization: 'Basic ' + encoding.b64encode(`${__ENV.SLUICE_TENANT}:${__ENV.SLUICE_SK}`),
  },
  responseType: 'none',
};

export function setup() {
  return { run: Math.floor(Math.random() * 0x10000).toString(16).padStart(4, '0') };
}

// The batch body, split where each iteration puts its own 8 hex digits: building 1,000 ids
// in JavaScript per request would make k6, not Sluice, the bottleneck.
let parts = null;
function template(run) {
  const vu = (__VU % 0x1000).toString(16).padStart(3, '0');
  const at = new Date(Date.now() - 60000).toISOString();
  const events = [];
  for (let i = 0; i < BATCH; i++) {
    const idx = i.toString(16).padStart(12, '0');
    events.push(
      `{"event_name":"Purchase_Completed","payload":{"currency":"USD","amount":"9.99","sku":"sku-${i % 50}"},` +
        `"event_datetime":"${at}","event_id":"@@@@@@@@-${run}-4${vu}-8000-${idx}","installation_id":"inst-${i % 100}"}`,
    );
  }
  return `{"events":[${events.join(',')}]}`.split('@@@@@@@@');
}

let iteration = 0;
export default function (data) {
  if (parts === null) parts = template(data.run);
  iteration += 1;
  const seq = iteration.toString(16).padStart(8, '0');
  const res = http.post(url, parts.join(seq), params);
  check(res, { 'status 204': (r) => r.status === 204 });
}
