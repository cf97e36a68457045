/** The file store's indexes: a record's removal leaves what belongs to another record alone. */
import assert from "node:assert/strict";
import { deleteExpiredFiles } from "../../lib/store/file_cleanup.ts";
import { deleteFile, type FileRecord, getFileByName, putFile } from "../../lib/store/files.ts";

const HOUR = 3_600_000;

function record(id: string, userId: string, now: number, expiresAt: number): FileRecord {
  return {
    id,
    name: "files/report",
    uri: "https://generativelanguage.googleapis.com/v1beta/files/report",
    mimeType: "text/plain",
    bytes: 1,
    filename: "report.txt",
    purpose: "user_data",
    userId,
    keyId: "k1",
    state: "ACTIVE",
    source: "native",
    createdAt: now - HOUR,
    expiresAt,
  };
}

Deno.test("file store: removing an old record keeps the name index of a newer file with its name", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const now = Date.now();
    const old = record("file-a", "userA", now, now - 10 * HOUR);
    await putFile(kv, old, now);
    await putFile(kv, record("file-b", "userB", now, now + 48 * HOUR), now);
    assert.equal((await getFileByName(kv, "files/report"))?.id, "file-b");
    // The cleanup sweep, and a direct removal, of the old record.
    assert.equal(await deleteExpiredFiles(kv, { now, graceMs: HOUR }), 1);
    assert.equal((await getFileByName(kv, "files/report"))?.userId, "userB");
    await deleteFile(kv, old);
    assert.equal((await getFileByName(kv, "files/report"))?.userId, "userB");
    // Its own record's removal does take the index.
    await deleteFile(kv, record("file-b", "userB", now, now + 48 * HOUR));
    assert.equal(await getFileByName(kv, "files/report"), null);
  } finally {
    kv.close();
  }
});
