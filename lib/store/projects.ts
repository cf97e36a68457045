/**
 * Google Cloud projects in KV, one record per project label under `["gp", name]`. Google counts
 * quotas per project and model, so a project's cooldowns and limits apply to every key labelled
 * with it. A record is created the first time something is learned about the project.
 */
import * as z from "zod";
import { listRecords, parseRecord, readRecord, updateWithRetry } from "./kv_util.ts";
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
 * A stored project record with its limit values that are out of range dropped (an older version
 * stored any `quotaValue` as learned).
 */
function repairProject(v: Record<string, unknown>): Record<string, unknown> {
  return { ...v, learned: repairLimitsByModel(v.learned), limits: repairLimitsByModel(v.limits) };
}

/** The project of a stored value, or the schema's error when it cannot be read even repaired. */
function parseProject(value: unknown): ProjectRecord {
  return parseRecord(ProjectRecordSchema, value, repairProject);
}

/**
 * Reads every project record; a bad one is repaired in memory or skipped, and logged (one bad
 * record must not stop the pool from loading).
 */
export function listProjects(kv: Deno.Kv): Promise<ProjectRecord[]> {
  return listRecords(
    kv,
    [PREFIX],
    (value) => readRecord(ProjectRecordSchema, value, repairProject),
  );
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
