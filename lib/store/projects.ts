/**
 * Google Cloud projects in KV, one record per project label under `["gp", name]`. Google counts
 * quotas per project and model, so a project's cooldowns and limits apply to every key labelled
 * with it. A record is created the first time something is learned about the project.
 */
import * as z from "zod";
import { readRecord, type RecordRead, reportBadRecord, updateWithRetry } from "./kv_util.ts";
import { CooldownSchema } from "./gemini_keys.ts";
import { LimitsSchema, repairLimitsByModel } from "./models.ts";

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

/**
 * A stored project record, repaired when only limit values are out of range (an older version
 * stored any `quotaValue` as learned); `data` is null when it cannot be read at all.
 */
export function readProjectRecord(value: unknown): RecordRead<ProjectRecord> {
  return readRecord(ProjectRecordSchema, value, (v) => ({
    ...v,
    learned: repairLimitsByModel(v.learned),
    limits: repairLimitsByModel(v.limits),
  }));
}

/** The project of a stored value, or the schema's error when it cannot be read even repaired. */
function parseProject(value: unknown): ProjectRecord {
  return readProjectRecord(value).data ?? ProjectRecordSchema.parse(value);
}

/**
 * Reads every project record; a bad one is repaired in memory or skipped, and logged (one bad
 * record must not stop the pool from loading).
 */
export async function listProjects(kv: Deno.Kv): Promise<ProjectRecord[]> {
  const out: ProjectRecord[] = [];
  for await (const e of kv.list({ prefix: [PREFIX] }, { batchSize: 1000 })) {
    const read = readProjectRecord(e.value);
    reportBadRecord(e, read);
    if (read.data) out.push(read.data);
  }
  return out;
}

/** Reads one project record (repaired like `listProjects` does; throws when it cannot be read). */
export async function getProject(kv: Deno.Kv, name: string): Promise<ProjectRecord | null> {
  const e = await kv.get([PREFIX, name]);
  return e.value === null ? null : parseProject(e.value);
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
    return change(current === null ? emptyProject(name) : parseProject(current));
  });
  return next === null ? emptyProject(name) : parseProject(next);
}

/** Deletes a project record (its keys keep their label); false if none. */
export async function deleteProject(kv: Deno.Kv, name: string): Promise<boolean> {
  const entry = await kv.get([PREFIX, name]);
  if (entry.value === null) return false;
  await kv.delete([PREFIX, name]);
  return true;
}
