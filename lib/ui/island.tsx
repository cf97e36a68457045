/**
 * The one wrapper that puts an island on a server-rendered page: the component's server HTML inside
 * an element marked `data-island`, followed by its props as JSON in a data block that the client
 * entry (`lib/ui/client.tsx`) reads to hydrate it. Props must be plain JSON.
 */
import type { ComponentProps, ComponentType } from "preact";
import { type IslandName, ISLANDS } from "../../islands/registry.ts";

/** Serialises props for a `<script type="application/json">` block that no content can break out of. */
export function serializeProps(props: unknown): string {
  return JSON.stringify(props ?? {})
    .replaceAll("<", "\\u003c")
    .replaceAll(">", "\\u003e")
    .replaceAll("&", "\\u0026")
    .replaceAll("\u2028", "\\u2028")
    .replaceAll("\u2029", "\\u2029");
}

/** Renders island `name` with `props` on the server, ready to be hydrated in the browser. */
export function Island<K extends IslandName>(
  { name, props }: { name: K; props: ComponentProps<typeof ISLANDS[K]> },
) {
  // The registry maps each name to a component of exactly these props; TypeScript cannot see that
  // through the indexed access, so the component is called with them as a plain record.
  const Component = ISLANDS[name] as unknown as ComponentType<Record<string, unknown>>;
  return (
    <>
      <div class="island" data-island={name}>
        <Component {...(props as unknown as Record<string, unknown>)} />
      </div>
      <script
        type="application/json"
        data-island-props={name}
        // deno-lint-ignore react-no-danger -- escaped by serializeProps
        dangerouslySetInnerHTML={{ __html: serializeProps(props) }}
      />
    </>
  );
}
