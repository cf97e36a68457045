/**
 * Admin authentication for the admin API: `Authorization: Bearer <ADMIN_PASSWORD>`, checked against
 * the configured password, or against the stored hash of a password generated at first start.
 */
import { sha256Hex, timingSafeEqual } from "../secrets.ts";
import { verifyAdminPasswordHash } from "../store/meta.ts";

/** The outcome of checking an admin credential. */
export type AdminCheck = "ok" | "denied" | "unconfigured";

/** Checks admin credentials; caches successful hash checks (PBKDF2 is deliberately slow). */
export class AdminAuthenticator {
  #kv: Deno.Kv;
  #password: string | undefined;
  #hasStoredHash: boolean;
  #verified = new Set<string>();

  constructor(options: { kv: Deno.Kv; password: string | undefined; hasStoredHash: boolean }) {
    this.#kv = options.kv;
    this.#password = options.password;
    this.#hasStoredHash = options.hasStoredHash;
  }

  /** Whether any admin password exists (configured or generated). */
  get configured(): boolean {
    return this.#password !== undefined || this.#hasStoredHash;
  }

  /** Checks a presented password. */
  async check(presented: string | null): Promise<AdminCheck> {
    if (!this.configured) return "unconfigured";
    if (!presented) return "denied";
    const digest = await sha256Hex(presented);
    if (this.#password !== undefined) {
      return timingSafeEqual(digest, await sha256Hex(this.#password)) ? "ok" : "denied";
    }
    if (this.#verified.has(digest)) return "ok";
    if (await verifyAdminPasswordHash(this.#kv, presented)) {
      this.#verified.add(digest);
      return "ok";
    }
    return "denied";
  }
}
