/** The `model` field of the API requests: a name of at most `MAX_MODEL_NAME` characters. */
import * as z from "zod";
import { MAX_MODEL_NAME } from "../translate/models.ts";

/** Control characters, which no model name holds. */
// deno-lint-ignore no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

/** Whether `v` is a model name a request may give (the check of `ModelNameSchema`). */
export function isModelName(v: unknown): v is string {
  return typeof v === "string" && v.length >= 1 && v.length <= MAX_MODEL_NAME && !CONTROL.test(v);
}

/** A model name as requests give it. */
export const ModelNameSchema = z.string().min(1).max(
  MAX_MODEL_NAME,
  `must be at most ${MAX_MODEL_NAME} characters (a model name)`,
).refine((v) => !CONTROL.test(v), "must not contain control characters");
