/**
 * The ENCRYPTION_KEY of a local run when none is set: generated once and kept in a file in the
 * user's config directory (never next to the KV data it protects). On Deno Deploy it must be set.
 */
import { type Config, ConfigError } from "./config.ts";
import { randomBytes, toBase64Url } from "./secrets.ts";

/** Returns the configured ENCRYPTION_KEY, or the local one (creating it on first use). */
export async function resolveEncryptionKey(
  config: Config,
): Promise<{ key: string; createdFile: string | null; file: string | null }> {
  if (config.encryptionKey) return { key: config.encryptionKey, createdFile: null, file: null };
  if (config.onDeploy) {
    throw new ConfigError(
      "Missing environment variable ENCRYPTION_KEY: set a long random secret in the Deno Deploy " +
        "app's environment variables (it encrypts the stored Gemini keys)",
    );
  }
  const file = config.encryptionKeyFile;
  if (!file) {
    throw new ConfigError(
      "Missing environment variable ENCRYPTION_KEY (and no HOME to keep a local one)",
    );
  }
  let existing: string | null = null;
  try {
    existing = (await Deno.readTextFile(file)).trim();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  if (existing !== null) {
    if (existing.length >= 16) return { key: existing, createdFile: null, file };
    // Never replaced silently: the stored Gemini keys were sealed with what it held.
    throw new ConfigError(
      `The local encryption key file ${file} is damaged (${existing.length} characters, 16 at ` +
        "least): restore it, or set ENCRYPTION_KEY to the key the stored Gemini keys were sealed with",
    );
  }
  const key = toBase64Url(randomBytes(32));
  await Deno.mkdir(file.slice(0, file.lastIndexOf("/")), { recursive: true, mode: 0o700 });
  await Deno.writeTextFile(file, key + "\n", { mode: 0o600, createNew: true });
  return { key, createdFile: file, file };
}
