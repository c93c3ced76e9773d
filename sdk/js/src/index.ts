/**
 * Sluice attribution SDK for web apps. No runtime dependencies: `fetch` and (when present)
 * `localStorage` are all it uses.
 *
 *   const sluice = new Sluice({ baseUrl: "https://go.example.com", publishableKey: "pk_…" });
 *   const target = await sluice.checkDeferred();      // the deep link to open, or null
 *   await sluice.reportInstall({ campaign: "spring" }); // first launch
 *   await sluice.bindUser("usr_123");                 // after sign-up: conversions attribute
 */

export interface SluiceOptions {
  /** Where Sluice is reached, e.g. `https://go.example.com`. */
  baseUrl: string;
  /** A publishable key (`pk_…`): safe to ship in an app. */
  publishableKey: string;
  /** `web` unless the page runs inside an app's web view. */
  platform?: "web" | "ios" | "android";
  /** Where the install id is kept; defaults to `localStorage`, else memory. */
  storage?: KeyValueStorage;
  /** Defaults to the global `fetch`. */
  fetch?: typeof fetch;
  /** Attempts per call on network errors and 5xx (default 4). 4xx (429 included) are never
   * retried: they come back as a `SluiceError` at once. */
  maxAttempts?: number;
  /** First retry delay in ms, doubling (default 250). */
  retryBaseMs?: number;
}

export interface KeyValueStorage {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
}

export interface InstallReport {
  /** Generated and persisted when not given. */
  installId?: string;
  /** A Sluice click id (from the link's destination `{click_id}`), if the app has one. */
  clickId?: string;
  source?: string;
  medium?: string;
  campaign?: string;
}

export interface Attribution {
  installId: string;
  attributed: boolean;
  matchType: "click_id" | "referrer" | "fingerprint" | "metadata" | "organic";
  clickId?: string;
  linkId?: string;
  campaign?: string;
  source?: string;
  medium?: string;
  ctitSeconds?: number;
  target?: string;
}

/** A call Sluice refused (4xx) or that kept failing (network, 5xx) after every attempt. */
export class SluiceError extends Error {
  /** The HTTP status, or 0 for a network failure. */
  readonly status: number;
  /** Sluice's error code (`invalid_field`, `invalid_api_key`, …) or `network_error`. */
  readonly code: string;
  readonly field?: string;
  readonly retryable: boolean;

  constructor(status: number, code: string, message: string, field?: string) {
    super(message);
    this.name = "SluiceError";
    this.status = status;
    this.code = code;
    this.field = field;
    this.retryable = status === 0 || status >= 500;
  }
}

const INSTALL_KEY = "sluice.install_id";

class MemoryStorage implements KeyValueStorage {
  private values = new Map<string, string>();
  getItem(key: string): string | null {
    return this.values.get(key) ?? null;
  }
  setItem(key: string, value: string): void {
    this.values.set(key, value);
  }
}

function defaultStorage(): KeyValueStorage {
  try {
    const ls = (globalThis as { localStorage?: KeyValueStorage }).localStorage;
    if (ls) {
      ls.getItem(INSTALL_KEY);
      return ls;
    }
  } catch {
    // Storage disabled (private mode, sandboxed frame): fall back to memory.
  }
  return new MemoryStorage();
}

function newId(): string {
  const c = (globalThis as { crypto?: { randomUUID?: () => string } }).crypto;
  if (c?.randomUUID) return c.randomUUID();
  const hex = Array.from({ length: 32 }, () => Math.floor(Math.random() * 16).toString(16));
  hex[12] = "4";
  hex[16] = ((parseInt(hex[16], 16) & 0x3) | 0x8).toString(16);
  const h = hex.join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

export class Sluice {
  private readonly baseUrl: string;
  private readonly key: string;
  private readonly platform: string;
  private readonly storage: KeyValueStorage;
  private readonly fetchImpl: typeof fetch;
  private readonly maxAttempts: number;
  private readonly retryBaseMs: number;

  constructor(options: SluiceOptions) {
    if (!options?.baseUrl) throw new TypeError("baseUrl is required");
    if (!options.publishableKey?.startsWith("pk_")) {
      throw new TypeError("publishableKey must be a publishable key (pk_…)");
    }
    this.baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.key = options.publishableKey;
    this.platform = options.platform ?? "web";
    this.storage = options.storage ?? defaultStorage();
    const f = options.fetch ?? (globalThis as { fetch?: typeof fetch }).fetch;
    if (!f) throw new TypeError("no fetch available: pass options.fetch");
    this.fetchImpl = f.bind(globalThis);
    this.maxAttempts = Math.max(1, options.maxAttempts ?? 4);
    this.retryBaseMs = options.retryBaseMs ?? 250;
  }

  /** This device's install id: the stored one, or a new one (stored). */
  installId(): string {
    let id = this.storage.getItem(INSTALL_KEY);
    if (!id) {
      id = newId();
      this.storage.setItem(INSTALL_KEY, id);
    }
    return id;
  }

  /** Reports the install (first launch) and returns how it was attributed. Repeating it is
   * safe: the same install gets the same answer. */
  async reportInstall(report: InstallReport = {}): Promise<Attribution> {
    const installId = report.installId ?? this.installId();
    if (report.installId) this.storage.setItem(INSTALL_KEY, report.installId);
    const body: Record<string, string> = { install_id: installId, platform: this.platform };
    if (report.clickId) body.click_id = report.clickId;
    if (report.source) body.source = report.source;
    if (report.medium) body.medium = report.medium;
    if (report.campaign) body.campaign = report.campaign;
    return toAttribution(await this.call("POST", "/v1/attribution/install", body));
  }

  /** The deferred deep link for this device (the destination of the link it clicked before
   * installing), or null when nothing matched. */
  async checkDeferred(): Promise<string | null> {
    const v = await this.call("POST", "/v1/attribution/deferred", {
      install_id: this.installId(),
      platform: this.platform,
    });
    const target = (v.target as { url?: string } | undefined)?.url;
    return v.matched && target ? target : null;
  }

  /** Binds a signed-up user to this install, so the user's conversions attribute to it. */
  async bindUser(userId: string): Promise<void> {
    if (!userId) throw new TypeError("userId is required");
    await this.call("PUT", "/v1/attribution/link", { install_id: this.installId(), user_id: userId });
  }

  private async call(method: string, path: string, body: unknown): Promise<Record<string, unknown>> {
    let last: SluiceError | undefined;
    for (let attempt = 1; attempt <= this.maxAttempts; attempt++) {
      if (attempt > 1) {
        const delay = this.retryBaseMs * 2 ** (attempt - 2);
        await sleep(delay * (0.5 + Math.random()));
      }
      let resp: Response;
      try {
        resp = await this.fetchImpl(this.baseUrl + path, {
          method,
          headers: { "Content-Type": "application/json", Authorization: `Bearer ${this.key}` },
          body: JSON.stringify(body),
        });
      } catch (e) {
        last = new SluiceError(0, "network_error", `network error: ${(e as Error)?.message ?? e}`);
        continue;
      }
      const text = await resp.text();
      let json: Record<string, unknown> = {};
      try {
        json = text ? JSON.parse(text) : {};
      } catch {
        // Not JSON (a proxy's error page): described by the status alone.
      }
      if (resp.ok) return json;
      const err = (json.error ?? {}) as { code?: string; message?: string; details?: { field?: string } };
      last = new SluiceError(
        resp.status,
        err.code ?? `http_${resp.status}`,
        err.message ?? `Sluice answered ${resp.status}`,
        err.details?.field,
      );
      if (!last.retryable) throw last;
    }
    throw last ?? new SluiceError(0, "network_error", "no attempt made");
  }
}

function toAttribution(v: Record<string, unknown>): Attribution {
  const out: Attribution = {
    installId: String(v.install_id),
    attributed: Boolean(v.attributed),
    matchType: v.match_type as Attribution["matchType"],
  };
  if (typeof v.click_id === "string") out.clickId = v.click_id;
  if (typeof v.link_id === "string") out.linkId = v.link_id;
  if (typeof v.campaign === "string") out.campaign = v.campaign;
  if (typeof v.source === "string") out.source = v.source;
  if (typeof v.medium === "string") out.medium = v.medium;
  if (typeof v.ctit_seconds === "number") out.ctitSeconds = v.ctit_seconds;
  const target = (v.target as { url?: string } | undefined)?.url;
  if (target) out.target = target;
  return out;
}
