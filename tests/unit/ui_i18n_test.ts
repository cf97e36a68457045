/**
 * The UI strings: both languages complete with the same placeholders, the language choice from
 * the switch's cookie and `Accept-Language`, and placeholder filling.
 */
import assert from "node:assert/strict";
import { format, LANGS, MESSAGES, pickLang, translator } from "../../lib/ui/i18n.ts";

function placeholders(text: string): string[] {
  return [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();
}

Deno.test("every UI string exists in English and Chinese with the same placeholders", () => {
  const en = MESSAGES.en;
  const zh = MESSAGES["zh-CN"];
  assert.deepEqual(Object.keys(zh).sort(), Object.keys(en).sort());
  for (const key of Object.keys(en) as (keyof typeof en)[]) {
    assert.ok(en[key].trim() && zh[key].trim(), `empty string for ${key}`);
    assert.deepEqual(placeholders(zh[key]), placeholders(en[key]), `placeholders of ${key}`);
  }
  assert.deepEqual([...LANGS], ["en", "zh-CN"]);
});

Deno.test("the language comes from the switch's cookie, else the best Accept-Language match, else English", () => {
  assert.equal(pickLang(null, null), "en");
  assert.equal(pickLang("zh-CN,zh;q=0.9,en;q=0.8", null), "zh-CN");
  assert.equal(pickLang("zh-TW", null), "zh-CN");
  assert.equal(pickLang("zh", null), "zh-CN");
  assert.equal(pickLang("en-GB,zh;q=0.5", null), "en");
  assert.equal(pickLang("fr-FR,zh;q=0.7,en;q=0.6", null), "zh-CN");
  assert.equal(pickLang("en;q=0.2,zh;q=0.8", null), "zh-CN");
  assert.equal(pickLang("zh;q=0,en", null), "en");
  assert.equal(pickLang("de, fr", null), "en");
  assert.equal(pickLang("zh-CN", "en"), "en");
  assert.equal(pickLang("en", "zh-CN"), "zh-CN");
  assert.equal(pickLang("zh-CN", "klingon"), "zh-CN", "an unknown cookie value is ignored");
});

Deno.test("placeholders are filled and keys built at run time are looked up safely", () => {
  assert.equal(format("{a} of {b}", { a: 1, b: "two" }), "1 of two");
  assert.equal(format("{missing} stays", {}), "{missing} stays");
  const t = translator("zh-CN");
  assert.equal(
    t("keys.report", { added: 2, duplicates: 1, rejected: 0 }),
    "新增 2 个 · 重复 1 个 · 拒绝 0 个",
  );
  assert.equal(t.maybe("setting.strategy"), "密钥选择策略");
  assert.equal(t.maybe("setting.noSuchField"), undefined);
  assert.equal(t.maybe("toString"), undefined, "no prototype keys");
  assert.equal(t.lang, "zh-CN");
});
