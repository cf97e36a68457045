/**
 * The island wrapper: server HTML inside a marked element, props in a JSON data block that no
 * value can break out of, and the registry that names every island.
 */
import assert from "node:assert/strict";
import { renderToString } from "preact-render-to-string";
import { ISLANDS } from "../../islands/registry.ts";
import { LangContext } from "../../lib/ui/i18n.ts";
import { Island, serializeProps } from "../../lib/ui/island.tsx";

Deno.test("props are serialised so that no string can close the script block or start markup", () => {
  const props = { text: "</script><script>alert(1)</script>", amp: "a&b", line: "x\u2028y" };
  const out = serializeProps(props);
  assert.ok(!out.includes("<") && !out.includes(">") && !out.includes("&"));
  assert.ok(!out.includes("\u2028"));
  assert.deepEqual(JSON.parse(out), props);
});

Deno.test("an island renders its server HTML in a marked element followed by its props", () => {
  const html = renderToString(
    <LangContext.Provider value="zh-CN">
      <Island name="CopyButton" props={{ text: "http://gw/v1</script>", label: "Base URL" }} />
    </LangContext.Provider>,
  );
  const m =
    /^<div class="island" data-island="CopyButton">(.*)<\/div><script type="application\/json" data-island-props="CopyButton">(.*)<\/script>$/s
      .exec(html);
  assert.ok(m, html);
  assert.match(m[1], /<button[^>]*>.*复制.*<\/button>/s, "rendered in the page's language");
  assert.deepEqual(JSON.parse(m[2]), { text: "http://gw/v1</script>", label: "Base URL" });
});

Deno.test("the registry names each island after its component", () => {
  for (const [name, component] of Object.entries(ISLANDS)) {
    assert.equal(component.name, name);
  }
});
