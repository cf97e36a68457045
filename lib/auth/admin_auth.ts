/**
 * Admin authentication for the admin API: `Authorization: Bearer <ADMIN_PASSWORD>`, checked against
 * the configured password, or against the stored hash of a password generated at first start.
 */
import { sha256Hex, timingSafeEqual } from "../secrets.ts";
import { adminPasswordHashId, verifyAdminPasswordHash } from "../store/meta.ts";

/** The outcome of checking an admin credential. */
export type AdminCheck = "ok" | "denied" | "unconfigured";

/** Checks admin credentials; caches successful hash checks (PBKDF2 is deliberately slow). */
export class AdminAuthenticator {
  #kv: Deno.Kv;
  #password: string | undefined;
  #hasStoredHash: boolean;
  #verified = new Set<string>();
  /** The last credential fingerprint made, and what it was made from. */
  #credential: { source: string; id: string } | null = null;

  constructor(options: { kv: Deno.Kv; password: string | undefined; hasStoredHash: boolean }) {
    this.#kv = options.kv;
    this.#password = options.password;
    this.#hasStoredHash = options.hasStoredHash;
  }

  /** Whether any admin password exists (configured or generated). */
  get configured(): boolean {
    return this.#password !== undefined || this.#hasStoredHash;
  }

  /**
   * A fingerprint of the admin credential in force (the configured password, or the stored hash
   * of the generated one), which admin sessions are bound to: a changed password voids every
   * session made under the old one. Null when there is no credential.
   */
  async credentialId(): Promise<string | null> {
    const source = this.#password !== undefined
      ? `password:${this.#password}`
      : this.#hasStoredHash
      ? await adminPasswordHashId(this.#kv).then((id) => id && `hash:${id}`)
      : null;
    if (source === null) return null;
    if (this.#credential?.source !== source) {
      this.#credential = {
        source,
        id: (await sha256Hex(`admin-session\u0000${source}`)).slice(0, 32),
      };
    }
    return this.#credential.id;
  }

  /**
   * Whether `presented` is a password this isolate has checked and found right already: such a
   * request needs no guarded check (it reveals nothing to a guesser, who never presents it).
   */
  async knownGood(presented: string | null): Promise<boolean> {
    return !!presented && this.#verified.size > 0 && this.#verified.has(await sha256Hex(presented));
  }

  /** Checks a presented password. */
  async check(presented: string | null): Promise<AdminCheck> {
    if (!this.configured) return "unconfigured";
    if (!presented) return "denied";
    const digest = await sha256Hex(presented);
    if (this.#password !== undefined) {
      if (!timingSafeEqual(digest, await sha256Hex(this.#password))) return "denied";
      this.#verified.add(digest);
      return "ok";
    }
    if (this.#verified.has(digest)) return "ok";
    if (await verifyAdminPasswordHash(this.#kv, presented)) {
      this.#verified.add(digest);
      return "ok";
    }
    return "denied";
  }
}
