/**
 * Deployment-wide secrets metadata in KV: the salt and check value of the sealing key, and the hash
 * of a generated admin password. Never the secrets themselves.
 */
import * as z from "zod";
import {
  fromBase64,
  pbkdf2,
  PBKDF2_ITERATIONS,
  randomBytes,
  Sealer,
  toBase64Url,
} from "../secrets.ts";
import { timingSafeEqual } from "../secrets.ts";

const CRYPTO_KEY: Deno.KvKey = ["meta", "crypto"];
const ADMIN_KEY: Deno.KvKey = ["meta", "admin"];
const CHECK_PLAINTEXT = "gemini-gateway-check";

const CryptoMetaSchema = z.object({ salt: z.string(), check: z.string() });
const AdminMetaSchema = z.object({
  salt: z.string(),
  hash: z.string(),
  iterations: z.number().int(),
});

/** Thrown when the stored data was sealed under another `ENCRYPTION_KEY`. */
export class WrongEncryptionKeyError extends Error {
  constructor() {
    super(
      "ENCRYPTION_KEY does not match the key this database was created with; " +
        "set the original ENCRYPTION_KEY (stored Gemini keys cannot be read otherwise)",
    );
    this.name = "WrongEncryptionKeyError";
  }
}

/**
 * Opens the sealer for this database: creates salt and check value on first use, and verifies on
 * later starts that `passphrase` is the one the data was sealed with.
 */
export async function openSealer(kv: Deno.Kv, passphrase: string): Promise<Sealer> {
  const entry = await kv.get(CRYPTO_KEY);
  if (entry.value !== null) {
    const meta = CryptoMetaSchema.parse(entry.value);
    const sealer = await Sealer.fromPassphrase(passphrase, fromBase64(meta.salt));
    try {
      await sealer.open(meta.check, "check");
    } catch {
      throw new WrongEncryptionKeyError();
    }
    return sealer;
  }
  const salt = randomBytes(16);
  const sealer = await Sealer.fromPassphrase(passphrase, salt);
  const meta = { salt: toBase64Url(salt), check: await sealer.seal(CHECK_PLAINTEXT, "check") };
  const res = await kv.atomic().check({ key: CRYPTO_KEY, versionstamp: null }).set(CRYPTO_KEY, meta)
    .commit();
  // Another process initialised it first: use theirs.
  return res.ok ? sealer : openSealer(kv, passphrase);
}

/** Whether an admin password hash has been stored (a generated local password). */
export async function hasAdminPasswordHash(kv: Deno.Kv): Promise<boolean> {
  return (await kv.get(ADMIN_KEY)).value !== null;
}

/** Stores the PBKDF2 hash of a generated admin password, replacing any earlier one. */
export async function setAdminPasswordHash(kv: Deno.Kv, password: string): Promise<void> {
  const salt = randomBytes(16);
  const hash = await pbkdf2(password, salt);
  await kv.set(ADMIN_KEY, {
    salt: toBase64Url(salt),
    hash: toBase64Url(hash),
    iterations: PBKDF2_ITERATIONS,
  });
}

/** The stored admin password hash, or null when there is none. */
async function readAdminMeta(kv: Deno.Kv): Promise<z.infer<typeof AdminMetaSchema> | null> {
  const entry = await kv.get(ADMIN_KEY);
  return entry.value === null ? null : AdminMetaSchema.parse(entry.value);
}

/** The stored admin password hash as one string (salt and hash), or null when there is none. */
export async function adminPasswordHashId(kv: Deno.Kv): Promise<string | null> {
  const meta = await readAdminMeta(kv);
  return meta && `${meta.salt}:${meta.hash}`;
}

/** Checks `password` against the stored hash; false when none is stored. */
export async function verifyAdminPasswordHash(kv: Deno.Kv, password: string): Promise<boolean> {
  const meta = await readAdminMeta(kv);
  if (meta === null) return false;
  const hash = await pbkdf2(password, fromBase64(meta.salt), { iterations: meta.iterations });
  return timingSafeEqual(toBase64Url(hash), meta.hash);
}
