/**
 * Google Cloud projects in KV, one record per project label under `["gp", name]`. Google counts
 * quotas per project and model, so a project's cooldowns and limits apply to every key labelled
 * with it. A record is created the first time something is learned about the project.
 */
import * as z from "zod";
import { updateWithRetry } from "./kv_util.ts";
import { CooldownSchema } from "./gemini_keys.ts";
import { LimitsSchema } from "./models.ts";

const PREFIX = "gp";

/** The longest project label accepted. */
export const MAX_PROJECT_LENGTH = 100;

/** The stored record of one project. */
export const ProjectRecordSchema = z.object({
  name: z.string(),
  /** Pauses of the whole project by model id (`"*"`: every model). */
  cooldowns: z.record(z.string(), CooldownSchema).default({}),
  /** Limits learned from 429 `quotaValue`s, by model. */
  learned: z.record(z.string(), LimitsSchema).default({}),
  /** Limits set by the admin (e.g. a paid tier), by model; they win over learned and defaults. */
  limits: z.record(z.string(), LimitsSchema).default({}),
  updatedAt: z.number().default(0),
});

/** One project as stored. */
export type ProjectRecord = z.infer<typeof ProjectRecordSchema>;

/** An empty project record. */
export function emptyProject(name: string): ProjectRecord {
  return { name, cooldowns: {}, learned: {}, limits: {}, updatedAt: 0 };
}

/** Reads every project record. */
export async function listProjects(kv: Deno.Kv): Promise<ProjectRecord[]> {
  const out: ProjectRecord[] = [];
  for await (const e of kv.list({ prefix: [PREFIX] }, { batchSize: 1000 })) {
    out.push(ProjectRecordSchema.parse(e.value));
  }
  return out;
}

/** Reads one project record. */
export async function getProject(kv: Deno.Kv, name: string): Promise<ProjectRecord | null> {
  const e = await kv.get([PREFIX, name]);
  return e.value === null ? null : ProjectRecordSchema.parse(e.value);
}

/**
 * Applies `change` to a project record atomically, creating it when missing; `change` returns
 * undefined to write nothing. Returns the record as stored afterwards.
 */
export async function updateProject(
  kv: Deno.Kv,
  name: string,
  change: (record: ProjectRecord) => ProjectRecord | undefined,
): Promise<ProjectRecord> {
  const next = await updateWithRetry<ProjectRecord>(kv, [PREFIX, name], (current) => {
    return change(current === null ? emptyProject(name) : ProjectRecordSchema.parse(current));
  });
  return next === null ? emptyProject(name) : ProjectRecordSchema.parse(next);
}

/** Deletes a project record (its keys keep their label); false if none. */
export async function deleteProject(kv: Deno.Kv, name: string): Promise<boolean> {
  const entry = await kv.get([PREFIX, name]);
  if (entry.value === null) return false;
  await kv.delete([PREFIX, name]);
  return true;
}
