/** The admin credential check, the fingerprint admin sessions are bound to, and their renewal. */
import assert from "node:assert/strict";
import { AdminAuthenticator } from "../../lib/auth/admin_auth.ts";
import { setAdminPasswordHash } from "../../lib/store/meta.ts";
import {
  deleteAdminSession,
  getAdminSession,
  putAdminSession,
  renewAdminSession,
} from "../../lib/store/admin_sessions.ts";

Deno.test("the admin credential's fingerprint changes with the password, configured or generated", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const configured = (password: string) =>
      new AdminAuthenticator({ kv, password, hasStoredHash: false });
    const a = await configured("first-password").credentialId();
    assert.match(a ?? "", /^[0-9a-f]{32}$/);
    assert.equal(await configured("first-password").credentialId(), a, "stable across isolates");
    assert.notEqual(await configured("second-password").credentialId(), a);
    assert.doesNotMatch(a!, /first-password/);

    // A generated password: only its stored hash is known, and a new one changes the fingerprint.
    const generated = new AdminAuthenticator({ kv, password: undefined, hasStoredHash: true });
    await setAdminPasswordHash(kv, "generated-one");
    const g1 = await generated.credentialId();
    assert.equal(await generated.check("generated-one"), "ok");
    await setAdminPasswordHash(kv, "generated-two");
    const g2 = await generated.credentialId();
    assert.ok(g1 && g2 && g1 !== g2 && g1 !== a);
    assert.equal(
      await new AdminAuthenticator({ kv, password: undefined, hasStoredHash: false })
        .credentialId(),
      null,
    );
  } finally {
    kv.close();
  }
});

Deno.test("renewing a session never brings back one that was logged out meanwhile", async () => {
  const kv = await Deno.openKv(":memory:");
  try {
    const session = { csrf: "c", createdAt: 0, expiresAt: 1_000, credential: "x" };
    await putAdminSession(kv, { hash: "h", session });
    assert.equal(
      await renewAdminSession(kv, { hash: "h", session: { ...session, expiresAt: 2_000 } }),
      true,
    );
    assert.equal((await getAdminSession(kv, "h"))?.expiresAt, 2_000);
    await deleteAdminSession(kv, "h");
    assert.equal(await renewAdminSession(kv, { hash: "h", session }), false);
    assert.equal(await getAdminSession(kv, "h"), null);
  } finally {
    kv.close();
  }
});
