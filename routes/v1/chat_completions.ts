/**
 * `POST /v1/chat/completions`: validate, translate, run across the key pool, translate back (as one
 * JSON body or as a live SSE stream), and record usage once the answer is complete.
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import { readSseData } from "../../lib/gemini/sse.ts";
import {
  type GenerateContentResponse,
  GenerateContentResponseSchema,
} from "../../lib/gemini/types.ts";
import { ChatCompletionRequestSchema } from "../../lib/openai/chat_schema.ts";
import { failureToOpenAi, OpenAiError } from "../../lib/openai/errors.ts";
import { readBody } from "../../lib/openai/request.ts";
import { type AttemptResult, runWithFailover } from "../../lib/pool/failover.ts";
import { randomId } from "../../lib/secrets.ts";
import type { Attempt } from "../../lib/store/usage.ts";
import { accountRequest } from "../../lib/accounting.ts";
import type { UsageMetadata } from "../../lib/gemini/types.ts";
import { toGeminiChatRequest, TranslateError } from "../../lib/translate/chat_request.ts";
import { type CompletionContext, toChatCompletion } from "../../lib/translate/chat_response.ts";
import { ChatStreamTranslator, streamErrorEvent } from "../../lib/translate/chat_stream.ts";

const encoder = new TextEncoder();

/** Parses one upstream JSON payload; an `{"error": …}` payload or a bad shape is reported as such. */
function parseChunk(data: string): { ok: true; value: GenerateContentResponse } | {
  ok: false;
  status: number;
  body: string;
} {
  let json: unknown;
  try {
    json = JSON.parse(data);
  } catch {
    return { ok: false, status: 502, body: `Upstream sent invalid JSON: ${data.slice(0, 100)}` };
  }
  if (json && typeof json === "object" && "error" in json) {
    const code = Number((json as { error: { code?: unknown } }).error?.code);
    return { ok: false, status: Number.isFinite(code) && code >= 400 ? code : 500, body: data };
  }
  const parsed = GenerateContentResponseSchema.safeParse(json);
  if (!parsed.success) return { ok: false, status: 502, body: "Upstream sent an unexpected shape" };
  return { ok: true, value: parsed.data };
}

interface OpenedStream {
  first: GenerateContentResponse;
  rest: AsyncGenerator<string>;
}

/** Builds the chat-completions routes. */
export function chatCompletionsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/", async (c) => {
    const req = await readBody(c.req.raw, ChatCompletionRequestSchema);
    let translated;
    try {
      translated = toGeminiChatRequest(req);
    } catch (err) {
      if (err instanceof TranslateError) {
        throw new OpenAiError(400, err.message, { param: err.param, code: "invalid_value" });
      }
      throw err;
    }
    const { model, body } = translated;
    const settings = await gw.settings.get();
    const userId = c.get("userKey").id;
    const signal = c.req.raw.signal;
    const ctx: CompletionContext = {
      id: randomId("chatcmpl-", 18),
      created: Math.floor(gw.now() / 1000),
      model,
    };
    const payload = JSON.stringify(body);
    const failover = {
      model,
      maxAttempts: settings.maxAttempts,
      defaultCooldownMs: settings.defaultCooldownSeconds * 1000,
      now: gw.now,
      signal,
    };
    const startedAt = gw.now();
    const account = (
      attempts: Attempt[],
      outcome: { ok: boolean; status: number; errorClass?: string; usage?: UsageMetadata },
    ) => accountRequest(gw, { model, userId, attempts, startedAt, ...outcome });

    if (!req.stream) {
      const result = await runWithFailover(gw.pool, failover, async (key) => {
        const res = await gw.client.send(key.secret, {
          method: "POST",
          path: `/v1beta/models/${encodeURIComponent(model)}:generateContent`,
          body: payload,
        }, signal);
        const text = await res.text();
        if (!res.ok) return { ok: false, status: res.status, body: text };
        return parseChunk(text);
      });
      if (!result.ok) {
        account(result.attempts, {
          ok: false,
          status: result.failure.status,
          errorClass: result.failure.kind,
        });
        throw failureToOpenAi(result.failure);
      }
      account(result.attempts, { ok: true, status: 200, usage: result.value.usageMetadata });
      return c.json(toChatCompletion(result.value, ctx));
    }

    // Streaming: an attempt succeeds only once the first event has been read, so that every
    // failure before the first byte reaches the client can still move to another key.
    const upstreamAbort = new AbortController();
    const stopUpstream = () => upstreamAbort.abort();
    signal.addEventListener("abort", stopUpstream, { once: true });
    const result = await runWithFailover(
      gw.pool,
      failover,
      async (key): Promise<AttemptResult<OpenedStream>> => {
        const res = await gw.client.send(key.secret, {
          method: "POST",
          path: `/v1beta/models/${encodeURIComponent(model)}:streamGenerateContent`,
          query: "alt=sse",
          body: payload,
        }, upstreamAbort.signal);
        if (!res.ok || !res.body) {
          return { ok: false, status: res.status, body: await res.text() };
        }
        const events = readSseData(res.body);
        const first = await events.next();
        if (first.done) {
          return { ok: false, status: 502, body: "Upstream stream ended with no data" };
        }
        const parsed = parseChunk(first.value);
        if (!parsed.ok) {
          await events.return(undefined);
          return parsed;
        }
        return { ok: true, value: { first: parsed.value, rest: events } };
      },
    );
    if (!result.ok) {
      account(result.attempts, {
        ok: false,
        status: result.failure.status,
        errorClass: result.failure.kind,
      });
      throw failureToOpenAi(result.failure);
    }
    const { first, rest } = result.value;
    const translator = new ChatStreamTranslator(ctx, {
      includeUsage: req.stream_options?.include_usage === true,
    });
    const idleMs = gw.config.upstreamTimeoutMs;
    let pending: GenerateContentResponse | null = first;
    let done = false;

    const finish = (controller: ReadableStreamDefaultController<Uint8Array>, error?: string) => {
      done = true;
      if (error) {
        send(controller, streamErrorEvent(error, "upstream_stream_error"));
      } else {
        for (const chunk of translator.end()) send(controller, chunk);
        controller.enqueue(encoder.encode("data: [DONE]\n\n"));
      }
      controller.close();
      account(result.attempts, {
        ok: !error,
        status: 200,
        errorClass: error ? "stream_error" : undefined,
        usage: translator.usage,
      });
    };
    const send = (controller: ReadableStreamDefaultController<Uint8Array>, value: unknown) =>
      controller.enqueue(encoder.encode(`data: ${JSON.stringify(value)}\n\n`));

    const stream = new ReadableStream<Uint8Array>({
      async pull(controller) {
        if (done) return;
        if (pending) {
          for (const chunk of translator.push(pending)) send(controller, chunk);
          pending = null;
          return;
        }
        let timer: ReturnType<typeof setTimeout> | undefined;
        try {
          const next = await Promise.race([
            rest.next(),
            new Promise<"timeout">((
              resolve,
            ) => (timer = setTimeout(() => resolve("timeout"), idleMs))),
          ]);
          if (next === "timeout") {
            stopUpstream();
            return finish(
              controller,
              `Upstream sent nothing for ${idleMs} ms; the answer is incomplete`,
            );
          }
          if (next.done) {
            return translator.complete
              ? finish(controller)
              : finish(controller, "Upstream ended the stream before the answer was complete");
          }
          const parsed = parseChunk(next.value);
          if (!parsed.ok) {
            stopUpstream();
            return finish(
              controller,
              `Upstream failed during the stream: ${parsed.body.slice(0, 300)}`,
            );
          }
          for (const chunk of translator.push(parsed.value)) send(controller, chunk);
        } catch (err) {
          if (done) return;
          finish(controller, `Upstream stream broke: ${err instanceof Error ? err.message : err}`);
        } finally {
          clearTimeout(timer);
        }
      },
      cancel() {
        // The client went away: stop the upstream and keep what was used.
        done = true;
        stopUpstream();
        rest.return(undefined).catch(() => {});
        account(result.attempts, {
          ok: true,
          status: 200,
          errorClass: "client_closed",
          usage: translator.usage,
        });
      },
    });
    return new Response(stream, {
      headers: {
        "content-type": "text/event-stream; charset=utf-8",
        "cache-control": "no-cache",
        "x-accel-buffering": "no",
      },
    });
  });

  return app;
}
