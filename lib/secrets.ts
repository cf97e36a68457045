/**
 * Secret handling with Web Crypto: sealing Gemini keys at rest, hashing user keys and passwords,
 * random tokens, constant-time comparison and masking. Nothing here touches KV or the network.
 */

const encoder = new TextEncoder();
const decoder = new TextDecoder();

const B64URL = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** Base64url without padding of `bytes` (works on Deno 2.5, which predates `Uint8Array.toBase64`). */
export function toBase64Url(bytes: Uint8Array): string {
  if (bytes.length <= 64) {
    // Ids made per request: a table lookup beats btoa and three string replacements.
    let out = "";
    let i = 0;
    for (; i + 2 < bytes.length; i += 3) {
      const n = (bytes[i] << 16) | (bytes[i + 1] << 8) | bytes[i + 2];
      out += B64URL[n >> 18] + B64URL[(n >> 12) & 63] + B64URL[(n >> 6) & 63] + B64URL[n & 63];
    }
    if (i < bytes.length) {
      const n = (bytes[i] << 16) | ((bytes[i + 1] ?? 0) << 8);
      out += B64URL[n >> 18] + B64URL[(n >> 12) & 63];
      if (i + 1 < bytes.length) out += B64URL[(n >> 6) & 63];
    }
    return out;
  }
  return toBase64(bytes).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/** Standard base64 (with padding) of `bytes`, in blocks (large media included). */
export function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode(...bytes.subarray(i, i + 0x8000));
  }
  return btoa(binary);
}

/** Decodes base64 or base64url (padding optional); throws on characters outside the alphabet. */
export function fromBase64(text: string): Uint8Array {
  const normal = text.replaceAll("-", "+").replaceAll("_", "/");
  const padded = normal + "=".repeat((4 - (normal.length % 4)) % 4);
  const binary = atob(padded);
  const out = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) out[i] = binary.charCodeAt(i);
  return out;
}

/** Lower-case hex of `bytes`. */
export function toHex(bytes: Uint8Array): string {
  let out = "";
  for (const b of bytes) out += b.toString(16).padStart(2, "0");
  return out;
}

/** SHA-256 of a UTF-8 string, as lower-case hex. */
export async function sha256Hex(text: string): Promise<string> {
  const digest = await crypto.subtle.digest("SHA-256", encoder.encode(text));
  return toHex(new Uint8Array(digest));
}

/** `n` cryptographically random bytes. */
export function randomBytes(n: number): Uint8Array {
  return crypto.getRandomValues(new Uint8Array(n));
}

/** Random bytes for identifiers, drawn from a pool that one `getRandomValues` call refills. */
const idPool = new Uint8Array(4096);
let idPoolAt = idPool.length;

/**
 * A random identifier: `prefix` followed by base64url of `bytes` random bytes. Ids are made per
 * request, so their bytes come from a pool refilled 4 KiB at a time (the same generator, one call
 * per few hundred ids); secrets take `randomBytes`.
 */
export function randomId(prefix = "", bytes = 12): string {
  if (bytes > idPool.length) return prefix + toBase64Url(randomBytes(bytes));
  if (idPoolAt + bytes > idPool.length) {
    crypto.getRandomValues(idPool);
    idPoolAt = 0;
  }
  const id = prefix + toBase64Url(idPool.subarray(idPoolAt, idPoolAt + bytes));
  idPoolAt += bytes;
  return id;
}

/** Compares two strings in time that depends only on their lengths, not on where they differ. */
export function timingSafeEqual(a: string, b: string): boolean {
  const x = encoder.encode(a);
  const y = encoder.encode(b);
  let diff = x.length ^ y.length;
  const n = Math.max(x.length, y.length);
  for (let i = 0; i < n; i++) diff |= (x[i] ?? 0) ^ (y[i] ?? 0);
  return diff === 0;
}

/** Shows a secret by its ends only (`AIza…Xy12`), whatever its length or format. */
export function maskSecret(secret: string): string {
  if (secret.length <= 8) return "…" + secret.slice(-2);
  if (secret.length <= 16) return secret.slice(0, 2) + "…" + secret.slice(-2);
  return secret.slice(0, 4) + "…" + secret.slice(-4);
}

/**
 * An id from a request path as it may be shown back (an error, the audit log): masked when it is
 * not an id at all but looks like a secret someone passed by mistake (a user key `sk-...`, a
 * Gemini key), or is longer than any id.
 */
export function shownId(id: string): string {
  return /^(sk-|AIza|AQ\.)/.test(id) || id.length > 64 ? maskSecret(id) : id;
}

/** PBKDF2 parameters used for the encryption key and the admin password hash. */
export const PBKDF2_ITERATIONS = 100_000;

/** Derives raw bits from a passphrase with PBKDF2-SHA256. */
export async function pbkdf2(
  passphrase: string,
  salt: Uint8Array,
  options: { iterations?: number; bits?: number } = {},
): Promise<Uint8Array> {
  const base = await crypto.subtle.importKey(
    "raw",
    encoder.encode(passphrase),
    "PBKDF2",
    false,
    ["deriveBits"],
  );
  const bits = await crypto.subtle.deriveBits(
    {
      name: "PBKDF2",
      hash: "SHA-256",
      salt: salt as Uint8Array<ArrayBuffer>,
      iterations: options.iterations ?? PBKDF2_ITERATIONS,
    },
    base,
    options.bits ?? 256,
  );
  return new Uint8Array(bits);
}

/** Encrypts and decrypts short secrets with AES-256-GCM; the sealed form is `v1.<iv>.<ciphertext>`. */
export class Sealer {
  #key: CryptoKey;
  #mac: CryptoKey;

  private constructor(key: CryptoKey, mac: CryptoKey) {
    this.#key = key;
    this.#mac = mac;
  }

  /** Builds a sealer whose AES and HMAC keys are derived from `passphrase` and a stored random `salt`. */
  static async fromPassphrase(passphrase: string, salt: Uint8Array): Promise<Sealer> {
    const raw = await pbkdf2(passphrase, salt, { bits: 512 });
    const key = await crypto.subtle.importKey(
      "raw",
      raw.slice(0, 32) as Uint8Array<ArrayBuffer>,
      "AES-GCM",
      false,
      ["encrypt", "decrypt"],
    );
    const mac = await crypto.subtle.importKey(
      "raw",
      raw.slice(32) as Uint8Array<ArrayBuffer>,
      { name: "HMAC", hash: "SHA-256" },
      false,
      ["sign"],
    );
    return new Sealer(key, mac);
  }

  /** Seals `plaintext`; `context` is bound as additional data so a value cannot be moved to another record. */
  async seal(plaintext: string, context: string): Promise<string> {
    const iv = randomBytes(12);
    const data = await crypto.subtle.encrypt(
      {
        name: "AES-GCM",
        iv: iv as Uint8Array<ArrayBuffer>,
        additionalData: encoder.encode(context),
      },
      this.#key,
      encoder.encode(plaintext),
    );
    return `v1.${toBase64Url(iv)}.${toBase64Url(new Uint8Array(data))}`;
  }

  /** Opens a sealed value; throws when the key, the context or the data do not match. */
  async open(sealed: string, context: string): Promise<string> {
    const [version, iv, data] = sealed.split(".");
    if (version !== "v1" || !iv || !data) throw new Error("Sealed value has an unknown format");
    const plain = await crypto.subtle.decrypt(
      {
        name: "AES-GCM",
        iv: fromBase64(iv) as Uint8Array<ArrayBuffer>,
        additionalData: encoder.encode(context),
      },
      this.#key,
      fromBase64(data) as Uint8Array<ArrayBuffer>,
    );
    return decoder.decode(plain);
  }

  /** A keyed fingerprint of a secret (HMAC-SHA256, 128 bits) for duplicate detection without decrypting. */
  async fingerprint(secret: string): Promise<string> {
    const mac = await crypto.subtle.sign("HMAC", this.#mac, encoder.encode(secret));
    return toHex(new Uint8Array(mac)).slice(0, 32);
  }
}
