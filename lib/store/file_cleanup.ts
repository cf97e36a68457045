/**
 * Removal of expired file records. `lib/store/files.ts` stores them with `expireIn`, but KV only
 * promises that expired entries vanish eventually; this sweep removes records (and their indexes)
 * whose upstream file expired more than `grace` ago, using the file store's own helpers.
 */
import { deleteFile, fileKey, toFileRecord } from "./files.ts";

/** Deletes file records whose `expiresAt` is older than `now - graceMs`; returns how many. */
export async function deleteExpiredFiles(
  kv: Deno.Kv,
  options: { now: number; graceMs: number },
): Promise<number> {
  let deleted = 0;
  const prefix = fileKey("").slice(0, -1);
  for await (const e of kv.list({ prefix }, { batchSize: 500 })) {
    const record = toFileRecord(e.value);
    if (record && record.expiresAt < options.now - options.graceMs) {
      await deleteFile(kv, record);
      deleted++;
    }
  }
  return deleted;
}
