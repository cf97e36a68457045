/**
 * Integration harness: a fake Gemini upstream, the gateway built on KV (`:memory:` or a file)
 * served on 127.0.0.1 port 0, an admin password, and helpers for the admin API and user keys.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import type { App } from "../../lib/app.ts";
import type { OpenAiErrorBody } from "../../lib/openai/errors.ts";
import { openGateway, type StartupReport } from "../../lib/bootstrap.ts";
import { parseConfig } from "../../lib/config.ts";
import {
  DUMMY_THOUGHT_SIGNATURE,
  type FakeGemini,
  type FakeGeminiOptions,
  type KeyBehavior,
  startFakeGemini,
} from "../fakes/fake_gemini.ts";

/** The admin password every harness uses. */
export const ADMIN_PASSWORD = "test-admin-password";
/** The encryption secret every harness uses unless told otherwise. */
export const ENCRYPTION_KEY = "test-encryption-key-0123456789";

/** A manual clock for tests: starts at the real time, moves only when told. */
export class FakeClock {
  t = Date.now();
  /** The current time. */
  now = (): number => this.t;
  /** Moves time forward. */
  advance(ms: number): void {
    this.t += ms;
  }
}

/** Options of `startGateway`. */
export interface GatewayOptions {
  /** Keys the upstream knows, with their behaviour; they are also imported through GEMINI_KEYS. */
  keys?: Record<string, KeyBehavior>;
  /** An existing fake upstream (shared across restarts). */
  fake?: FakeGemini;
  /** Extra options of the fake upstream the harness starts (e.g. `strict`, `models`, `reply`). */
  fakeOptions?: Omit<FakeGeminiOptions, "keys">;
  /** KV file path; default `:memory:`. */
  kvPath?: string;
  /** An already open KV (to build a second isolate on the same database). */
  kv?: Deno.Kv;
  clock?: FakeClock;
  env?: Record<string, string>;
  encryptionKey?: string;
  /** Wraps the gateway's upstream fetch (to hold or count upstream calls). */
  upstreamFetch?: typeof fetch;
}

/** A running gateway for one test. */
export interface TestGateway {
  url: string;
  fake: FakeGemini;
  app: App;
  kv: Deno.Kv;
  clock: FakeClock;
  report: StartupReport;
  /** Calls the admin API with the admin password; parses JSON answers. */
  admin<T = Record<string, unknown>>(
    method: string,
    path: string,
    body?: unknown,
  ): Promise<{ status: number; json: T }>;
  /** Creates a user key and returns its secret. */
  createUserKey(options?: { name?: string; rpm?: number }): Promise<string>;
  /** An OpenAI client for this gateway (no automatic retries). */
  openai(apiKey: string): OpenAI;
  /** Stops the server, drains background work; closes KV and the fake unless they were passed in. */
  close(): Promise<void>;
}

/** Starts a fake upstream (unless given) and a gateway in front of it. */
export async function startGateway(options: GatewayOptions = {}): Promise<TestGateway> {
  const ownFake = !options.fake;
  const fake = options.fake ??
    await startFakeGemini({ quiet: true, ...options.fakeOptions, keys: options.keys ?? {} });
  const ownKv = !options.kv;
  const kv = options.kv ?? await Deno.openKv(options.kvPath ?? ":memory:");
  const clock = options.clock ?? new FakeClock();
  const config = parseConfig({
    GEMINI_BASE_URL: fake.url,
    ADMIN_PASSWORD,
    GEMINI_KEYS: Object.keys(options.keys ?? {}).join(","),
    KV_PATH: options.kvPath ?? ":memory:",
    ...options.env,
  });
  let opened;
  try {
    opened = await openGateway(config, {
      kv,
      encryptionKey: options.encryptionKey ?? ENCRYPTION_KEY,
      now: clock.now,
      fetch: options.upstreamFetch,
    });
  } catch (err) {
    if (ownKv) kv.close();
    if (ownFake) await fake.close();
    throw err;
  }
  const { app, report } = opened;
  const ac = new AbortController();
  const server = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} },
    app.fetch,
  );
  const url = `http://127.0.0.1:${server.addr.port}`;

  async function admin<T>(method: string, path: string, body?: unknown) {
    const res = await fetch(url + path, {
      method,
      headers: {
        authorization: `Bearer ${ADMIN_PASSWORD}`,
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const text = await res.text();
    return { status: res.status, json: (text ? JSON.parse(text) : null) as T };
  }

  return {
    url,
    fake,
    app,
    kv,
    clock,
    report,
    admin,
    async createUserKey(opts = {}) {
      const res = await admin<{ key: string }>("POST", "/admin/api/user-keys", {
        name: opts.name ?? "test",
        ...(opts.rpm ? { rpm: opts.rpm } : {}),
      });
      if (res.status !== 201) throw new Error(`Creating a user key failed: ${res.status}`);
      return res.json.key;
    },
    openai(apiKey: string) {
      return new OpenAI({ baseURL: `${url}/v1`, apiKey, maxRetries: 0 });
    },
    async close() {
      ac.abort();
      await server.finished;
      await app.drain();
      if (ownKv) kv.close();
      if (ownFake) await fake.close();
    },
  };
}

/**
 * An upstream fetch whose streams stall mid-answer: a `streamGenerateContent` answer passes its
 * first event (never its last: the answer is not finished), then nothing until the gateway aborts
 * the call (other calls go through unchanged).
 */
export const stallingStreams: typeof fetch = async (input, init) => {
  const res = await fetch(input, init);
  const url = input instanceof Request ? input.url : String(input);
  if (!url.includes(":streamGenerateContent") || !res.body) return res;
  const reader = res.body.getReader();
  const first = await reader.read();
  const signal = init?.signal ?? undefined;
  // The first event alone, however many the first read brought.
  let head = first.done ? null : first.value;
  if (head) {
    const text = new TextDecoder().decode(head);
    const end = text.search(/\r?\n\r?\n/);
    if (end !== -1) head = new TextEncoder().encode(text.slice(0, end) + "\r\n\r\n");
  }
  const body = new ReadableStream<Uint8Array>({
    start(controller) {
      if (head) controller.enqueue(head);
      // The upstream body is let go as well, or a test can end with it still open.
      signal?.addEventListener("abort", () => {
        controller.error(signal.reason);
        reader.cancel().catch(() => {});
      }, { once: true });
    },
    cancel: () => reader.cancel(),
  });
  return new Response(body, { status: res.status, headers: res.headers });
};

/** Every entry of `kv` as text, key and value (a `KvU64` as `u64:<n>`): to check what KV holds. */
export async function kvText(kv: Deno.Kv): Promise<string> {
  const lines: string[] = [];
  for await (const e of kv.list({ prefix: [] })) {
    const value = e.value instanceof Deno.KvU64 ? `u64:${e.value.value}` : JSON.stringify(e.value);
    lines.push(`${JSON.stringify(e.key)} ${value}`);
  }
  return lines.join("\n");
}

/** Posts a raw request to the gateway and returns status, headers and parsed JSON (if any). */
export async function post<T = OpenAiErrorBody>(
  url: string,
  options: { apiKey?: string; body: string | unknown; headers?: Record<string, string> },
): Promise<{ status: number; headers: Headers; json: T }> {
  const res = await fetch(url, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      ...(options.apiKey ? { authorization: `Bearer ${options.apiKey}` } : {}),
      ...options.headers,
    },
    body: typeof options.body === "string" ? options.body : JSON.stringify(options.body),
  });
  const text = await res.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    json = text;
  }
  return { status: res.status, headers: res.headers, json: json as T };
}

type Json = Record<string, unknown>;

/** A generateContent body as the fake upstream received it. */
export interface SentGenerateBody {
  contents: { role: string; parts: Json[] }[];
  systemInstruction?: { parts: { text: string }[] };
  tools?: Json[];
  generationConfig?: Json;
}

/** The generate(Stream)Content bodies the fake upstream received, in order. */
export function generateBodies(gw: TestGateway): SentGenerateBody[] {
  return gw.fake.requests.filter((r) => /:(stream)?[gG]enerateContent$/.test(r.path))
    .map((r) => r.body as SentGenerateBody);
}

/** The `data:` payloads of an SSE body, parsed. */
export async function sseData(res: Response): Promise<Json[]> {
  const out: Json[] = [];
  for (const block of (await res.text()).split("\n\n")) {
    const data = block.split("\n").find((l) => l.startsWith("data: "));
    if (data) out.push(JSON.parse(data.slice(6)));
  }
  return out;
}

/** The first function-call part of generate body `n` (a call the client sent back). */
export function sentCall(gw: TestGateway, n: number): Json | undefined {
  return generateBodies(gw)[n]?.contents.flatMap((c) => c.parts).find((p) => p.functionCall);
}

/** Asserts `part` carries the model's own thought signature, not Google's dummy stand-in. */
export function assertOwnSignature(part: Json | undefined, message?: string): void {
  const signature = part?.thoughtSignature;
  assert.ok(
    typeof signature === "string" && signature !== DUMMY_THOUGHT_SIGNATURE,
    message ?? `the model's own signature goes back: ${JSON.stringify(part)}`,
  );
}
