/**
 * CSRF in a real browser: a page on another origin (same site, so the Lax session cookie does
 * travel) posts a form and a fetch to the admin API of a logged-in operator; both are refused, while
 * the UI's own calls with the session's token succeed. Also: no CSP violation on any page.
 */
import assert from "node:assert/strict";
import { startGateway } from "../integration/harness.ts";
import { hydrated, login, openBrowser } from "./browser.ts";

function attackerPage(target: string): string {
  // A text/plain form can smuggle a JSON body; the fetch tries the same with credentials.
  return `<!DOCTYPE html><html><body>
<form id="f" method="post" action="${target}/admin/api/user-keys" enctype="text/plain">
<input type="hidden" name='{"name":"forged-form","rpm":1,"x":"' value='"}'>
</form>
<pre id="out">pending</pre>
<script>
fetch("${target}/admin/api/user-keys", {
  method: "POST", mode: "no-cors", credentials: "include",
  headers: { "content-type": "text/plain" },
  body: JSON.stringify({ name: "forged-fetch" }),
}).then(() => { document.getElementById("out").textContent = "sent"; document.getElementById("f").submit(); },
  () => { document.getElementById("out").textContent = "blocked"; document.getElementById("f").submit(); });
</script></body></html>`;
}

Deno.test("a forged post from another origin is refused; the UI's own token passes", async () => {
  const gw = await startGateway({});
  const ac = new AbortController();
  const attacker = Deno.serve(
    { port: 0, hostname: "127.0.0.1", signal: ac.signal, onListen() {} },
    () => new Response(attackerPage(gw.url), { headers: { "content-type": "text/html" } }),
  );
  const b = await openBrowser();
  try {
    const { page } = b;
    await login(page, gw.url);
    const seen: { status: number; url: string }[] = [];
    page.on("response", (r) => {
      if (r.url().includes("/admin/api/user-keys")) seen.push({ status: r.status(), url: r.url() });
    });

    await page.goto(`http://127.0.0.1:${attacker.addr.port}/`);
    await page.waitForURL(`${gw.url}/admin/api/user-keys`);
    const body = await page.textContent("body");
    assert.match(body ?? "", /csrf_failed/, "the form post is refused with the CSRF error");
    assert.ok(seen.length >= 1 && seen.every((r) => r.status === 403), JSON.stringify(seen));
    const users = await gw.admin<{ data: { name: string }[] }>("GET", "/admin/api/user-keys");
    assert.deepEqual(users.json.data.map((u) => u.name), [], "nothing forged was created");

    // The same call from the UI's own page: refused without the token, accepted with it.
    await page.goto(`${gw.url}/admin/user-keys`);
    await hydrated(page);
    const statuses = await page.evaluate(async () => {
      const token = document.querySelector<HTMLMetaElement>('meta[name="csrf-token"]')!.content;
      const send = (headers: Record<string, string>) =>
        fetch("/admin/api/user-keys", {
          method: "POST",
          headers: { "content-type": "application/json", ...headers },
          body: JSON.stringify({ name: "own" }),
        }).then((r) => r.status);
      return [await send({}), await send({ "x-csrf-token": token })];
    });
    assert.deepEqual(statuses, [403, 201]);
    assert.deepEqual(b.errors, []);
  } finally {
    await b.close();
    ac.abort();
    await attacker.finished;
    await gw.close();
  }
});
