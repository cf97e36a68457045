/**
 * OpenAI image generation and editing <-> Gemini (pure): Imagen models through `:predict` (one
 * call, `n` samples), Gemini image models through `generateContent` with image output (one call
 * per image; an edit sends its pictures before the prompt). The requested size becomes the
 * nearest aspect ratio Gemini draws.
 */
import type { ImageEditFields, ImagesRequest } from "../openai/images_schema.ts";
import type { GenerateContentRequest, GenerateContentResponse, Part } from "../gemini/types.ts";
import { TranslateError } from "./chat_request.ts";
import { defaultedModel } from "./models.ts";

/** The model OpenAI image model names (and no model at all) stand for, unless an alias says else. */
export const DEFAULT_IMAGE_MODEL = "gemini-2.5-flash-image";

/** The aspect ratios Gemini's image models draw. */
const GEMINI_RATIOS = ["1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9", "21:9"];
/** The aspect ratios Imagen draws. */
const IMAGEN_RATIOS = ["1:1", "3:4", "4:3", "9:16", "16:9"];

/**
 * The aspect ratio of `ratios` closest to `size` (`<w>x<h>`), or undefined for `auto` / no size.
 */
export function aspectRatioOf(
  size: string | null | undefined,
  ratios: readonly string[] = GEMINI_RATIOS,
): string | undefined {
  if (size == null || size === "auto") return undefined;
  const m = /^(\d{1,5})x(\d{1,5})$/.exec(size.trim());
  const w = m ? Number(m[1]) : 0;
  const h = m ? Number(m[2]) : 0;
  if (!w || !h) {
    throw new TranslateError(
      `Invalid size '${size}': use 'auto' or '<width>x<height>', e.g. '1024x1024' or '1536x1024'`,
      "size",
    );
  }
  const want = Math.log(w / h);
  let best = ratios[0];
  let distance = Infinity;
  for (const r of ratios) {
    const [a, b] = r.split(":").map(Number);
    const d = Math.abs(Math.log(a / b) - want);
    if (d < distance) {
      distance = d;
      best = r;
    }
  }
  return best;
}

/** What to call upstream for an image request. */
export type ImagePlan =
  | {
    kind: "imagen";
    model: string;
    n: number;
    path: string;
    body: { instances: { prompt: string }[]; parameters: Record<string, unknown> };
  }
  | { kind: "gemini"; model: string; n: number; path: string; body: GenerateContentRequest };

function imageModel(
  model: string | null | undefined,
  aliases: Readonly<Record<string, string>>,
): string {
  return defaultedModel(model, {
    aliases,
    fallback: DEFAULT_IMAGE_MODEL,
    openai: /^(dall-e|gpt-image)/,
  });
}

/** The upstream calls of an image generation request. */
export function toImagePlan(
  req: ImagesRequest,
  aliases: Readonly<Record<string, string>> = {},
): ImagePlan {
  const model = imageModel(req.model, aliases);
  const n = req.n ?? 1;
  const imagen = model.startsWith("imagen-");
  const aspectRatio = aspectRatioOf(req.size, imagen ? IMAGEN_RATIOS : GEMINI_RATIOS);
  if (imagen) {
    const parameters: Record<string, unknown> = { sampleCount: n };
    if (aspectRatio) parameters.aspectRatio = aspectRatio;
    return {
      kind: "imagen",
      model,
      n,
      path: `/v1beta/models/${encodeURIComponent(model)}:predict`,
      body: { instances: [{ prompt: req.prompt }], parameters },
    };
  }
  return geminiImagePlan(model, n, [{ text: req.prompt }], aspectRatio);
}

/** A Gemini image model's call: `parts` as the user's turn, pictures asked for in the answer. */
function geminiImagePlan(
  model: string,
  n: number,
  parts: Part[],
  aspectRatio: string | undefined,
): ImagePlan & { kind: "gemini" } {
  const body: GenerateContentRequest = {
    contents: [{ role: "user", parts }],
    generationConfig: {
      responseModalities: ["TEXT", "IMAGE"],
      ...(aspectRatio ? { imageConfig: { aspectRatio } } : {}),
    },
  };
  return {
    kind: "gemini",
    model,
    n,
    path: `/v1beta/models/${encodeURIComponent(model)}:generateContent`,
    body,
  };
}

/** The image types Gemini reads. */
export const EDITABLE_TYPES = ["image/png", "image/jpeg", "image/webp", "image/heic", "image/heif"];

/** What an edit asks Gemini to do with a mask (it takes none of its own). */
export const MASK_NOTE =
  "The last picture is a mask, not a picture to edit: change the picture only where the mask " +
  "is transparent, and keep everything else as it is.";

/**
 * The upstream calls of an image edit: the pictures to edit (and the mask, as guidance, like
 * gpt-image's own masks), then the prompt, to a Gemini image model. Imagen cannot edit on the
 * Gemini API.
 */
export function toImageEditPlan(
  req: ImageEditFields,
  pictures: { images: readonly DrawnImage[]; mask: DrawnImage | null },
  aliases: Readonly<Record<string, string>> = {},
): ImagePlan & { kind: "gemini" } {
  const model = imageModel(req.model, aliases);
  if (model.startsWith("imagen-")) {
    throw new TranslateError(
      `Model '${model}' cannot edit pictures on the Gemini API: use a Gemini image model, such as ` +
        `'${DEFAULT_IMAGE_MODEL}'`,
      "model",
    );
  }
  const aspectRatio = aspectRatioOf(req.size);
  const inline = (img: DrawnImage) => ({ inlineData: { mimeType: img.mimeType, data: img.data } });
  const parts = [
    ...pictures.images.map(inline),
    ...(pictures.mask ? [inline(pictures.mask), { text: MASK_NOTE }] : []),
    { text: req.prompt },
  ];
  return geminiImagePlan(model, req.n ?? 1, parts, aspectRatio);
}

/** One picture as drawn: base64 bytes and their type. */
export interface DrawnImage {
  data: string;
  mimeType: string;
}

/** The pictures of an Imagen `:predict` answer. */
export function imagenImages(answer: unknown): DrawnImage[] {
  const predictions = (answer as { predictions?: unknown })?.predictions;
  if (!Array.isArray(predictions)) return [];
  const out: DrawnImage[] = [];
  for (const p of predictions) {
    const data = (p as { bytesBase64Encoded?: unknown })?.bytesBase64Encoded;
    const mimeType = (p as { mimeType?: unknown })?.mimeType;
    if (typeof data === "string" && data) {
      out.push({ data, mimeType: typeof mimeType === "string" ? mimeType : "image/png" });
    }
  }
  return out;
}

/** The pictures of a Gemini answer, and its text (what the model said instead, when no picture). */
export function geminiImages(
  answer: GenerateContentResponse,
): { images: DrawnImage[]; text: string } {
  const images: DrawnImage[] = [];
  let text = "";
  for (const p of answer.candidates?.[0]?.content?.parts ?? []) {
    if (p.thought) continue;
    if (p.inlineData?.mimeType.startsWith("image/")) images.push(p.inlineData);
    else if (typeof p.text === "string") text += p.text;
  }
  return { images, text };
}

/** The OpenAI answer of drawn pictures. */
export function toImagesResponse(
  images: readonly DrawnImage[],
  options: { url: boolean; now: number; usage?: { input: number; output: number } },
) {
  return {
    created: Math.floor(options.now / 1000),
    data: images.map((img) =>
      options.url ? { url: `data:${img.mimeType};base64,${img.data}` } : { b64_json: img.data }
    ),
    ...(options.usage
      ? {
        usage: {
          input_tokens: options.usage.input,
          output_tokens: options.usage.output,
          total_tokens: options.usage.input + options.usage.output,
        },
      }
      : {}),
  };
}
