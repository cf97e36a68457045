/**
 * `POST /v1/images/generations` and `POST /v1/images/edits`: OpenAI's image API on Gemini. Imagen
 * models are called through `:predict` (n samples in one call); Gemini image models (the default,
 * `gemini-2.5-flash-image`, which OpenAI model names also map to) through `generateContent` with
 * image output, once per picture. Pictures come back as `b64_json`, or as `data:` URLs when
 * `response_format` is `url` (the gateway hosts no images). An edit sends its pictures (a
 * multipart form, as the SDKs send it) with the prompt to a Gemini image model.
 */
import { Hono } from "hono";
import { requestAccount } from "../../lib/accounting.ts";
import { assertModelAllowed } from "../../lib/auth/user_limits.ts";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import { type CallTarget, failoverOptions, generateOnce } from "../../lib/gemini/generate.ts";
import type { GenerateContentResponse, UsageMetadata } from "../../lib/gemini/types.ts";
import { failureToOpenAi, OpenAiError, translating } from "../../lib/openai/errors.ts";
import {
  type ImageEditFields,
  ImageEditFieldsSchema,
  ImagesRequestSchema,
} from "../../lib/openai/images_schema.ts";
import { parseWith, readBody, readForm } from "../../lib/openai/request.ts";
import { sniff } from "../../lib/media/fetch_media.ts";
import { toBase64 } from "../../lib/secrets.ts";
import type { UserKeyRecord } from "../../lib/store/user_keys.ts";
import { mimeFromFilename } from "../../lib/translate/chat_request.ts";
import { type FailoverResult, failureOutcome, runWithFailover } from "../../lib/pool/failover.ts";
import type { Attempt } from "../../lib/store/usage.ts";
import {
  type DrawnImage,
  EDITABLE_TYPES,
  geminiImages,
  imagenImages,
  type ImagePlan,
  toImageEditPlan,
  toImagePlan,
  toImagesResponse,
} from "../../lib/translate/images.ts";
import { markWhole } from "../../lib/whole_body.ts";

/** Pictures sent to be edited (with the mask), at most, in bytes: Gemini takes them inline. */
export const MAX_EDIT_BYTES = 14 * 1024 * 1024;
/** Pictures one edit may send. */
const MAX_EDIT_IMAGES = 16;

/** Builds the image routes: generation and editing. */
export function imagesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/generations", async (c) => {
    const req = await readBody(c.req.raw, ImagesRequestSchema);
    const settings = await gw.settings.get();
    const plan: ImagePlan = translating(() => toImagePlan(req, settings.aliases));
    return markWhole(
      c.json(
        await drawImages(gw, c.req.raw, c.get("userKey"), plan, {
          url: req.response_format === "url",
          estimatedTokens: Math.ceil(req.prompt.length / 4),
        }),
      ),
    );
  });
  app.post("/edits", async (c) => {
    const { fields, images, mask } = await readEditForm(c.req.raw);
    const settings = await gw.settings.get();
    const plan = translating(() => toImageEditPlan(fields, { images, mask }, settings.aliases));
    const pictures = mask ? images.length + 1 : images.length;
    return markWhole(
      c.json(
        await drawImages(gw, c.req.raw, c.get("userKey"), plan, {
          url: fields.response_format === "url",
          // Gemini counts 258 tokens per picture up to 384 px, more for larger ones.
          estimatedTokens: Math.ceil(fields.prompt.length / 4) + 1_290 * pictures,
        }),
      ),
    );
  });
  return app;
}

/**
 * Draws the pictures of `plan` for `userKey`, accounted as the request: Imagen in one call,
 * Gemini image models once per picture. Throws OpenAI errors (a refusal is a 400 that says what
 * the model said instead).
 */
async function drawImages(
  gw: Gateway,
  raw: Request,
  userKey: UserKeyRecord,
  plan: ImagePlan,
  options: { url: boolean; estimatedTokens: number },
) {
  await assertModelAllowed(gw, { userKey, model: plan.model });
  const startedAt = gw.now();
  const attempts: Attempt[] = [];
  const account = requestAccount(gw, raw, {
    model: plan.model,
    userId: userKey.id,
    attempts,
    startedAt,
  });
  const target = {
    model: plan.model,
    signal: gw.clients.signalOf(raw),
    estimatedTokens: options.estimatedTokens,
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
      account({
        ...failureOutcome(result.failure),
        usage: usageOf(input, output),
        served: input + output > 0,
      });
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
  return toImagesResponse(images, {
    url: options.url,
    now: gw.now(),
    usage: plan.kind === "gemini" ? { input, output } : undefined,
  });
}

/** An image edit's form: its text fields, the pictures to edit, and the mask. */
async function readEditForm(
  raw: Request,
): Promise<{ fields: ImageEditFields; images: DrawnImage[]; mask: DrawnImage | null }> {
  const { form, fields } = await readForm(raw, {
    maxBytes: MAX_EDIT_BYTES,
    tooLarge: editTooLarge,
    hint: "Send the edit as multipart/form-data with the pictures in 'image' (or 'image[]') and " +
      "a 'prompt'",
    param: "image",
  });
  const files = [...form.getAll("image"), ...form.getAll("image[]")];
  if (!files.length) {
    throw new OpenAiError(400, "Send the picture to edit in the 'image' field", {
      param: "image",
    });
  }
  if (files.length > MAX_EDIT_IMAGES) {
    throw new OpenAiError(400, `At most ${MAX_EDIT_IMAGES} pictures may be edited at once`, {
      param: "image",
    });
  }
  const maskFile = form.get("mask");
  const sent = [...files, ...(maskFile === null ? [] : [maskFile])];
  const bytes = sent.reduce((n, f) => n + (f instanceof File ? f.size : 0), 0);
  if (bytes > MAX_EDIT_BYTES) throw editTooLarge(bytes);
  const images = await Promise.all(
    files.map((f, i) => pictureOf(f, files.length > 1 ? `image[${i}]` : "image")),
  );
  const mask = maskFile === null ? null : await pictureOf(maskFile, "mask");
  return { fields: parseWith(ImageEditFieldsSchema, fields), images, mask };
}

/** A form's picture as Gemini takes it: its type (declared, sniffed or by name) and base64. */
async function pictureOf(value: FormDataEntryValue, param: string): Promise<DrawnImage> {
  if (!(value instanceof File) || value.size === 0) {
    throw new OpenAiError(400, `'${param}' must be a non-empty picture file`, { param });
  }
  const bytes = new Uint8Array(await value.arrayBuffer());
  const declared = value.type.split(";")[0].trim().toLowerCase();
  const mimeType = [declared, sniff(bytes), mimeFromFilename(value.name)].find((t) =>
    t !== null && EDITABLE_TYPES.includes(t)
  );
  if (!mimeType) {
    throw new OpenAiError(
      400,
      `'${param}' (${value.name || "unnamed"}) is not a picture Gemini reads: send PNG, JPEG, ` +
        "WebP, HEIC or HEIF",
      { param, code: "invalid_image_format" },
    );
  }
  return { mimeType, data: toBase64(bytes) };
}

/** The 413 of an edit whose pictures are `bytes` long. */
function editTooLarge(bytes: number): OpenAiError {
  return new OpenAiError(
    413,
    `The pictures are ${bytes} bytes; an edit may send at most ${MAX_EDIT_BYTES} bytes of them ` +
      "(Gemini takes them inline)",
    { param: "image", code: "request_too_large" },
  );
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
