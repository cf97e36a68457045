/**
 * `POST /v1/embeddings`: string or array input -> batchEmbedContents (in batches of 100), with
 * `dimensions` -> outputDimensionality and `encoding_format: "base64"` (the OpenAI SDKs' default)
 * answered as little-endian float32 base64. Gemini reports no token usage for embeddings, so usage
 * is an estimate.
 */
import { Hono } from "hono";
import * as z from "zod";
import { requestAccount } from "../../lib/accounting.ts";
import { assertModelAllowed } from "../../lib/auth/user_limits.ts";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import { failoverOptions } from "../../lib/gemini/generate.ts";
import { EmbeddingsRequestSchema } from "../../lib/openai/embeddings_schema.ts";
import { failureToOpenAi, translating } from "../../lib/openai/errors.ts";
import { readBody } from "../../lib/openai/request.ts";
import { failureOutcome, runWithFailover } from "../../lib/pool/failover.ts";
import type { Attempt } from "../../lib/store/usage.ts";
import {
  estimateTokens,
  toBatchEmbedRequests,
  toEmbeddingsResponse,
} from "../../lib/translate/embeddings.ts";
import { markWhole } from "../../lib/whole_body.ts";

const BatchEmbedResponseSchema = z.object({
  embeddings: z.array(z.object({ values: z.array(z.number()) })),
});

/** Builds the embeddings route. */
export function embeddingsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/", async (c) => {
    const req = await readBody(c.req.raw, EmbeddingsRequestSchema);
    const settings = await gw.settings.get();
    const userKey = c.get("userKey");
    const plan = translating(() => toBatchEmbedRequests(req, settings.aliases));
    await assertModelAllowed(gw, { userKey, model: plan.model });
    const startedAt = gw.now();
    const attempts: Attempt[] = [];
    const account = requestAccount(gw, c.req.raw, {
      model: plan.model,
      userId: userKey.id,
      attempts,
      startedAt,
    });
    const vectors: number[][] = [];
    const path = `/v1beta/models/${encodeURIComponent(plan.model)}:batchEmbedContents`;
    for (const batch of plan.batches) {
      const tokens = batch.requests.reduce(
        (n, r) => n + estimateTokens(r.content.parts[0].text),
        0,
      );
      const signal = gw.clients.signalOf(c.req.raw);
      const options = await failoverOptions(gw, {
        model: plan.model,
        signal,
        estimatedTokens: tokens,
      });
      const payload = JSON.stringify(batch);
      const result = await runWithFailover(gw.pool, options, async (key) => {
        // The client leaving stops the call in flight too, not only the next attempt.
        const res = await gw.client.post(key.secret, { path, body: payload }, signal);
        const text = await res.text();
        if (!res.ok) return { ok: false, status: res.status, body: text };
        const parsed = BatchEmbedResponseSchema.safeParse(JSON.parse(text));
        if (!parsed.success || parsed.data.embeddings.length !== batch.requests.length) {
          return { ok: false, status: 502, body: "Upstream sent an unexpected embeddings shape" };
        }
        return { ok: true, value: parsed.data.embeddings.map((e) => e.values) };
      });
      attempts.push(...result.attempts);
      if (!result.ok) {
        account(failureOutcome(result.failure));
        throw failureToOpenAi(result.failure);
      }
      vectors.push(...result.value);
    }
    const body = toEmbeddingsResponse(vectors, {
      model: req.model,
      texts: plan.texts,
      base64: req.encoding_format === "base64",
    });
    account({
      usage: {
        promptTokenCount: body.usage.prompt_tokens,
        totalTokenCount: body.usage.total_tokens,
      },
    });
    return markWhole(c.json(body));
  });
  return app;
}
