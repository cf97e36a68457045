/** The `model` field of the API requests: a name of at most `MAX_MODEL_NAME` characters. */
import * as z from "zod";
import { MAX_MODEL_NAME } from "../translate/models.ts";

/** A model name as requests give it. */
export const ModelNameSchema = z.string().min(1).max(
  MAX_MODEL_NAME,
  `must be at most ${MAX_MODEL_NAME} characters (a model name)`,
);
