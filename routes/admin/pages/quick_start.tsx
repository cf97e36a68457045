/**
 * The quick start card: the OpenAI-compatible base URL of this gateway and copyable SDK snippets.
 */
import { publicOrigin } from "../../../lib/forwarded.ts";
import { Island } from "../../../lib/ui/island.tsx";
import type { Translator } from "../../../lib/ui/i18n.ts";

/** The model the snippets use. */
export const SNIPPET_MODEL = "gemini-2.5-flash";

/**
 * The base URL clients should use, as this request reached the gateway (behind trusted proxies,
 * the host they were asked for).
 */
export function baseUrl(req: Request, options: { onDeploy: boolean; trustProxy?: number }): string {
  return `${publicOrigin(req, options)}/v1`;
}

/** The snippets for a base URL, by name. */
export function snippets(
  base: string,
): { python: string; js: string; curl: string; codex: string; claude: string } {
  return {
    python: `from openai import OpenAI

client = OpenAI(base_url="${base}", api_key="sk-...")
reply = client.chat.completions.create(
    model="${SNIPPET_MODEL}",
    messages=[{"role": "user", "content": "Hello!"}],
)
print(reply.choices[0].message.content)`,
    js: `import OpenAI from "openai";

const client = new OpenAI({ baseURL: "${base}", apiKey: "sk-..." });
const reply = await client.chat.completions.create({
  model: "${SNIPPET_MODEL}",
  messages: [{ role: "user", content: "Hello!" }],
});
console.log(reply.choices[0].message.content);`,
    curl: `curl ${base}/chat/completions \\
  -H "Authorization: Bearer sk-..." \\
  -H "Content-Type: application/json" \\
  -d '{"model": "${SNIPPET_MODEL}", "messages": [{"role": "user", "content": "Hello!"}]}'`,
    codex: `model = "${SNIPPET_MODEL}"
model_provider = "gateway"

[model_providers.gateway]
name = "Gemini gateway"
base_url = "${base}"
env_key = "GATEWAY_KEY"
wire_api = "responses"`,
    claude: `export ANTHROPIC_BASE_URL="${base.replace(/\/v1$/, "")}"
export ANTHROPIC_API_KEY="sk-..."
export ANTHROPIC_MODEL="${SNIPPET_MODEL}"
claude`,
  };
}

function CodeBlock(props: { code: string; label: string; id: string }) {
  return (
    <div class="codeblock">
      <pre id={props.id} tabindex={0} aria-label={props.label}><code>{props.code}</code></pre>
      <Island name="CopyButton" props={{ text: props.code, label: `${props.label}` }} />
    </div>
  );
}

/** The quick start card. */
export function QuickStart(props: { t: Translator; base: string }) {
  const { t, base } = props;
  const code = snippets(base);
  return (
    <section class="card" aria-labelledby="quick-title" data-testid="quick-start">
      <h2 id="quick-title">{t("quick.title")}</h2>
      <p class="muted small">{t("quick.intro")}</p>
      <div class="field">
        <span class="field-help" id="base-url-label">{t("quick.baseUrl")}</span>
        <div class="copy-line">
          <code aria-labelledby="base-url-label" data-base-url>{base}</code>
          <Island name="CopyButton" props={{ text: base, label: t("quick.baseUrl") }} />
        </div>
      </div>
      <h3>{t("quick.snippet")}</h3>
      <CodeBlock code={code.python} label={t("quick.snippet")} id="snippet-python" />
      <details>
        <summary>{t("quick.snippetJs")}</summary>
        <CodeBlock code={code.js} label={t("quick.snippetJs")} id="snippet-js" />
      </details>
      <details>
        <summary>{t("quick.curl")}</summary>
        <CodeBlock code={code.curl} label={t("quick.curl")} id="snippet-curl" />
      </details>
      <details>
        <summary>{t("quick.codex")}</summary>
        <CodeBlock code={code.codex} label={t("quick.codex")} id="snippet-codex" />
      </details>
      <details>
        <summary>{t("quick.claude")}</summary>
        <CodeBlock code={code.claude} label={t("quick.claude")} id="snippet-claude" />
      </details>
    </section>
  );
}
