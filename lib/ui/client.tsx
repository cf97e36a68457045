/**
 * The client entry, bundled by `deno task build`: finds every island the server rendered
 * (`data-island`), reads its JSON props from the data block that follows it, and hydrates it with
 * its component from `islands/`, in the page's language. Marks `<html data-hydrated>` when done.
 */
import { type ComponentType, hydrate } from "preact";
import { type IslandName, ISLANDS } from "../../islands/registry.ts";
import { isLang, LangContext } from "./i18n.ts";

function isIslandName(name: string | undefined): name is IslandName {
  return name !== undefined && Object.hasOwn(ISLANDS, name);
}

function boot(): void {
  const htmlLang = document.documentElement.lang;
  const lang = isLang(htmlLang) ? htmlLang : "en";
  for (const el of document.querySelectorAll<HTMLElement>("[data-island]")) {
    const name = el.dataset.island;
    const data = el.nextElementSibling;
    if (!isIslandName(name) || !(data instanceof HTMLScriptElement) || !data.dataset.islandProps) {
      console.error(`Island '${name}' cannot be hydrated: unknown name or missing props`);
      continue;
    }
    const Component = ISLANDS[name] as unknown as ComponentType<Record<string, unknown>>;
    const props = JSON.parse(data.textContent || "{}") as Record<string, unknown>;
    hydrate(
      <LangContext.Provider value={lang}>
        <Component {...props} />
      </LangContext.Provider>,
      el,
    );
  }
  document.documentElement.dataset.hydrated = String(Math.round(performance.now()));
}

boot();
