// Unit tests of the SDK against a scripted fetch: install ids, retries (network errors and
// 5xx, never 4xx), typed errors, and the request shapes Sluice expects.
import { test } from "node:test";
import assert from "node:assert/strict";
import { Sluice, SluiceError } from "../dist/index.js";

function scripted(answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, init, body: JSON.parse(init.body) });
    const next = answers.shift();
    if (next instanceof Error) throw next;
    const [status, body] = next;
    return new Response(body === undefined ? "" : JSON.stringify(body), { status });
  };
  return { fetch, calls };
}

const memory = () => {
  const m = new Map();
  return { getItem: (k) => m.get(k) ?? null, setItem: (k, v) => m.set(k, v) };
};

const make = (fetch, storage = memory()) =>
  new Sluice({ baseUrl: "https://go.example.com/", publishableKey: "pk_test", fetch, storage, retryBaseMs: 1 });

test("reportInstall generates, persists and reuses an install id", async () => {
  const { fetch, calls } = scripted([
    [200, { install_id: "x", attributed: true, match_type: "click_id", click_id: "c1", link_id: "spring", target: { url: "https://x/" } }],
    [200, { install_id: "x", attributed: false, match_type: "organic" }],
  ]);
  const storage = memory();
  const sdk = make(fetch, storage);
  const a = await sdk.reportInstall({ campaign: "spring" });
  assert.equal(a.attributed, true);
  assert.equal(a.matchType, "click_id");
  assert.equal(a.linkId, "spring");
  assert.equal(a.target, "https://x/");
  await sdk.reportInstall();
  assert.equal(calls[0].url, "https://go.example.com/v1/attribution/install");
  assert.equal(calls[0].init.headers.Authorization, "Bearer pk_test");
  assert.match(calls[0].body.install_id, /^[0-9a-f-]{36}$/);
  assert.equal(calls[0].body.install_id, calls[1].body.install_id, "the same device, the same id");
  assert.equal(calls[0].body.platform, "web");
  assert.equal(calls[0].body.campaign, "spring");
  assert.equal(storage.getItem("sluice.install_id"), calls[0].body.install_id);
});

test("checkDeferred answers the target or null", async () => {
  const { fetch } = scripted([
    [200, { matched: true, target: { url: "https://app.example/p/1" } }],
    [200, { matched: false, match_type: "organic" }],
  ]);
  const sdk = make(fetch);
  assert.equal(await sdk.checkDeferred(), "https://app.example/p/1");
  assert.equal(await sdk.checkDeferred(), null);
});

test("network errors and 5xx are retried, then succeed", async () => {
  const { fetch, calls } = scripted([new TypeError("offline"), [503, { error: { code: "storage_unavailable", message: "retry" } }], [200, { matched: false }]]);
  assert.equal(await make(fetch).checkDeferred(), null);
  assert.equal(calls.length, 3);
});

test("4xx are never retried and become typed errors", async () => {
  const { fetch, calls } = scripted([[400, { error: { code: "invalid_field", message: "install_id is longer than 128 bytes", details: { field: "install_id" } } }]]);
  await assert.rejects(make(fetch).reportInstall({ installId: "x".repeat(200) }), (e) => {
    assert.ok(e instanceof SluiceError);
    assert.equal(e.status, 400);
    assert.equal(e.code, "invalid_field");
    assert.equal(e.field, "install_id");
    assert.equal(e.retryable, false);
    return true;
  });
  assert.equal(calls.length, 1);
});

test("giving up after every attempt reports the last failure", async () => {
  const { fetch, calls } = scripted([[500, {}], [502, undefined], [500, {}], [500, { error: { code: "boom", message: "down" } }]]);
  await assert.rejects(make(fetch).bindUser("u1"), (e) => e instanceof SluiceError && e.status === 500 && e.code === "boom");
  assert.equal(calls.length, 4);
  assert.equal(calls[0].init.method, "PUT");
  assert.equal(calls[0].body.user_id, "u1");
});

test("429 is a 4xx: not retried", async () => {
  const { fetch, calls } = scripted([[429, { error: { code: "rate_limited", message: "slow down" } }]]);
  await assert.rejects(make(fetch).checkDeferred(), (e) => e.status === 429 && e.code === "rate_limited" && !e.retryable);
  assert.equal(calls.length, 1);
});

test("options are checked", () => {
  assert.throws(() => new Sluice({ baseUrl: "", publishableKey: "pk_1" }), TypeError);
  assert.throws(() => new Sluice({ baseUrl: "https://x", publishableKey: "sk_1" }), /publishable/);
});
