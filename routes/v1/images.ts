/**
 * `POST /v1/images/generations`: OpenAI's image generation on Gemini. Imagen models are called
 * through `:predict` (n samples in one call); Gemini image models (the default,
 * `gemini-2.5-flash-image`, which OpenAI model names also map to) through `generateContent` with
 * image output, once per picture. Pictures come back as `b64_json`, or as `data:` URLs when
 * `response_format` is `url` (the gateway hosts no images).
 */
import { Hono } from "hono";
import { requestAccount } from "../../lib/accounting.ts";
import { assertModelAllowed } from "../../lib/auth/user_limits.ts";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import { type CallTarget, failoverOptions, generateOnce } from "../../lib/gemini/generate.ts";
import type { GenerateContentResponse, UsageMetadata } from "../../lib/gemini/types.ts";
import { failureToOpenAi, OpenAiError, translating } from "../../lib/openai/errors.ts";
import { ImagesRequestSchema } from "../../lib/openai/images_schema.ts";
import { readBody } from "../../lib/openai/request.ts";
import { type FailoverResult, failureOutcome, runWithFailover } from "../../lib/pool/failover.ts";
import type { Attempt } from "../../lib/store/usage.ts";
import {
  type DrawnImage,
  geminiImages,
  imagenImages,
  type ImagePlan,
  toImagePlan,
  toImagesResponse,
} from "../../lib/translate/images.ts";
import { markWhole } from "../../lib/whole_body.ts";

/** Builds the image generation route. */
export function imagesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/generations", async (c) => {
    const req = await readBody(c.req.raw, ImagesRequestSchema);
    const settings = await gw.settings.get();
    const userKey = c.get("userKey");
    const plan: ImagePlan = translating(() => toImagePlan(req, settings.aliases));
    await assertModelAllowed(gw, { userKey, model: plan.model });
    const startedAt = gw.now();
    const attempts: Attempt[] = [];
    const account = requestAccount(gw, c.req.raw, {
      model: plan.model,
      userId: userKey.id,
      attempts,
      startedAt,
    });
    const target = {
      model: plan.model,
      signal: gw.clients.signalOf(c.req.raw),
      estimatedTokens: Math.ceil(req.prompt.length / 4),
    };
    // Tokens of the pictures drawn so far (Gemini image models report them).
    let input = 0;
    let output = 0;
    /** One upstream call (with failover): its pictures, usage, and what the model said. */
    const draw = async (): Promise<Drawn> => {
      const result = plan.kind === "imagen"
        ? await predict(gw, { ...target, path: plan.path, body: plan.body })
        : drawnOf(await generateOnce(gw, { ...target, body: plan.body }));
      attempts.push(...result.attempts);
      if (!result.ok) {
        // The pictures drawn before this one were Gemini's work: their tokens count.
        account({ ...failureOutcome(result.failure), usage: usageOf(input, output) });
        throw failureToOpenAi(result.failure);
      }
      return result.value;
    };

    const images: DrawnImage[] = [];
    const calls = plan.kind === "imagen" ? 1 : plan.n;
    for (let i = 0; i < calls; i++) {
      const drawn = await draw();
      input += drawn.usage?.promptTokenCount ?? 0;
      output += drawn.usage?.candidatesTokenCount ?? 0;
      if (!drawn.images.length) {
        // Refused (safety) or answered in words: a key served it; say what the model said.
        account({ status: 400, errorClass: "client", usage: usageOf(input, output) });
        const said = drawn.text.trim();
        throw new OpenAiError(
          400,
          `The model drew no image${said ? `; it said: ${said.slice(0, 500)}` : ""}`,
          { code: "image_generation_failed", param: "prompt" },
        );
      }
      images.push(...drawn.images);
    }
    account({ usage: usageOf(input, output) });
    return markWhole(c.json(toImagesResponse(images, {
      url: req.response_format === "url",
      now: gw.now(),
      usage: plan.kind === "gemini" ? { input, output } : undefined,
    })));
  });
  return app;
}

/** What one call drew: pictures, token usage (Gemini), and what the model said instead. */
interface Drawn {
  images: DrawnImage[];
  text: string;
  usage?: UsageMetadata;
}

/** A Gemini image model's answer as what it drew. */
function drawnOf(result: FailoverResult<GenerateContentResponse>): FailoverResult<Drawn> {
  if (!result.ok) return result;
  const drawn = { ...geminiImages(result.value), usage: result.value.usageMetadata };
  return { ...result, value: drawn };
}

/** Imagen's `:predict` with failover: the pictures it drew. */
async function predict(
  gw: Gateway,
  call: CallTarget & { path: string; body: unknown },
): Promise<FailoverResult<Drawn>> {
  const { path, body, ...target } = call;
  const payload = JSON.stringify(body);
  return await runWithFailover(gw.pool, await failoverOptions(gw, target), async (key) => {
    const res = await gw.client.post(key.secret, { path, body: payload }, target.signal);
    const text = await res.text();
    if (!res.ok) return { ok: false, status: res.status, body: text };
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      return { ok: false, status: 502, body: "Upstream sent invalid JSON" };
    }
    return { ok: true, value: { images: imagenImages(json), text: "" } };
  });
}

function usageOf(input: number, output: number) {
  return { promptTokenCount: input, candidatesTokenCount: output, totalTokenCount: input + output };
}
