/**
 * Start-up: open the sealer (verifying ENCRYPTION_KEY), make or check the admin password, import
 * GEMINI_KEYS idempotently, and build the app. Shared by `main.ts` and the tests.
 */
import { type App, createApp } from "./app.ts";
import type { Config } from "./config.ts";
import { randomBytes, toBase64Url } from "./secrets.ts";
import { addGeminiKeys } from "./store/gemini_keys.ts";
import { hasAdminPasswordHash, openSealer, setAdminPasswordHash } from "./store/meta.ts";
import { leasePositions } from "./store/pool_cursor.ts";
import { RR_BLOCK } from "./pool/key_pool.ts";

/** What start-up did that the operator should be told. */
export interface StartupReport {
  /** A password generated at this first start; shown once, then only its hash is kept. */
  generatedAdminPassword: string | null;
  importedKeys: number;
  duplicateKeys: number;
  /** Keys of GEMINI_KEYS the admin deleted: left out. */
  deletedKeys: number;
}

/** Options of `openGateway`. */
export interface OpenGatewayOptions {
  kv: Deno.Kv;
  /** The secret the sealing key is derived from (after any local default was applied). */
  encryptionKey: string;
  fetch?: typeof fetch;
  now?: () => number;
}

/** Prepares KV and builds the app. */
export async function openGateway(
  config: Config,
  options: OpenGatewayOptions,
): Promise<{ app: App; report: StartupReport }> {
  const now = options.now ?? Date.now;
  // Independent round trips, made together: each one adds to an isolate's cold start. The
  // round-robin lease (a read, then a commit) is taken while start-up waits for the others, so
  // that the isolate's first pick finds it.
  const adminHash = hasAdminPasswordHash(options.kv);
  const firstLease = leasePositions(options.kv, RR_BLOCK);
  // Handled by the key pool once it is built; a start-up that fails before that drops it.
  firstLease.catch(() => {});
  let sealer;
  try {
    sealer = await openSealer(options.kv, options.encryptionKey);
  } catch (err) {
    await Promise.allSettled([adminHash, firstLease]);
    throw err;
  }
  let generatedAdminPassword: string | null = null;
  let hasAdminHash = await adminHash;
  if (!config.adminPassword && !config.onDeploy && !hasAdminHash) {
    generatedAdminPassword = toBase64Url(randomBytes(18));
    await setAdminPasswordHash(options.kv, generatedAdminPassword);
    hasAdminHash = true;
  }
  const imported = config.geminiKeys.length
    ? await addGeminiKeys(options.kv, sealer, config.geminiKeys, {
      now: now(),
      label: "GEMINI_KEYS",
      // A key the admin deleted stays deleted, though the environment still names it.
      skipDeleted: true,
    })
    : { added: [], duplicates: 0, deleted: 0 };
  const app = createApp({
    kv: options.kv,
    config,
    sealer,
    hasAdminHash,
    fetch: options.fetch,
    now,
    firstLease,
  });
  // A cold isolate is usually started by a request, which should not read KV step by step.
  app.warm();
  return {
    app,
    report: {
      generatedAdminPassword,
      importedKeys: imported.added.length,
      duplicateKeys: imported.duplicates,
      deletedKeys: imported.deleted,
    },
  };
}
