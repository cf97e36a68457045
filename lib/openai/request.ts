/**
 * Reading and validating JSON and multipart request bodies into typed values, with OpenAI-shaped
 * 400s.
 */
import type * as z from "zod";
import { declaredLength } from "../body_limit.ts";
import { OpenAiError, validationError } from "./errors.ts";

/** Parses the body as JSON; a body that is not JSON is a 400. */
export async function readJson(req: Request, options: { empty?: unknown } = {}): Promise<unknown> {
  const text = await req.text();
  if (!text.trim()) {
    if (options.empty !== undefined) return options.empty;
    throw new OpenAiError(400, "The request body is empty; send a JSON object", {
      code: "invalid_json",
    });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    const detail = err instanceof Error ? err.message : String(err);
    throw new OpenAiError(400, `We could not parse the JSON body of your request: ${detail}`, {
      code: "invalid_json",
    });
  }
}

/** Validates `value` with `schema`; the first problem becomes a 400 naming the field. */
export function parseWith<S extends z.ZodType>(schema: S, value: unknown): z.infer<S> {
  const result = schema.safeParse(value);
  if (!result.success) throw validationError(result.error);
  return result.data;
}

/** Reads and validates a JSON body in one step (an empty body is `options.empty`, if given). */
export async function readBody<S extends z.ZodType>(
  req: Request,
  schema: S,
  options: { empty?: unknown } = {},
): Promise<z.infer<S>> {
  return parseWith(schema, await readJson(req, options));
}

/**
 * Reads a multipart form of at most about `maxBytes`: a body that declares over 1 MiB more (a form
 * adds little) is refused with `tooLarge` before it is read, and one that is no form is a 400 with
 * `hint`, naming `param`. Returns the form and its text fields.
 */
export async function readForm(
  req: Request,
  options: { maxBytes: number; tooLarge: (bytes: number) => Error; hint: string; param: string },
): Promise<{ form: FormData; fields: Record<string, string> }> {
  const declared = declaredLength(req) ?? 0;
  if (declared > options.maxBytes + 1024 * 1024) throw options.tooLarge(declared);
  let form: FormData;
  try {
    form = await req.formData();
  } catch {
    throw new OpenAiError(400, options.hint, { param: options.param, code: "invalid_request" });
  }
  const fields: Record<string, string> = {};
  for (const [k, v] of form.entries()) if (typeof v === "string") fields[k] = v;
  return { form, fields };
}
