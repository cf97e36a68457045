/**
 * `POST /v1/completions`: OpenAI's legacy text completions (older SDK scripts, LangChain's
 * `OpenAI` class, editors' autocomplete with `suffix`), answered through the chat path: the prompt
 * is spelled as a chat request that asks Gemini to continue it (or to fill the gap before
 * `suffix`), and the chat answer is spelled back as `text_completion` objects.
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import {
  type CompletionsRequest,
  CompletionsRequestSchema,
} from "../../lib/openai/completions_schema.ts";
import type { ChatCompletionRequest } from "../../lib/openai/chat_schema.ts";
import type { Settings } from "../../lib/store/settings.ts";
import { randomId } from "../../lib/secrets.ts";
import { translating } from "../../lib/openai/errors.ts";
import { readBody } from "../../lib/openai/request.ts";
import { respellChatStream } from "../../lib/respell_stream.ts";
import type { UserKeyRecord } from "../../lib/store/user_keys.ts";
import type { ChatCompletion } from "../../lib/translate/chat_response.ts";
import {
  CompletionStream,
  emptyCompletion,
  promptOf,
  toChatRequest,
  toCompletion,
} from "../../lib/translate/completions.ts";
import { markWhole } from "../../lib/whole_body.ts";
import { answerChat, estimateChatInput } from "./chat_completions.ts";

/** Builds the text completions route. */
export function completionsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/", (c) => createCompletion(gw, c.req.raw, c.get("userKey")));
  return app;
}

async function createCompletion(
  gw: Gateway,
  raw: Request,
  userKey: UserKeyRecord,
): Promise<Response> {
  const req = await readBody(raw, CompletionsRequestSchema);
  const settings = gw.settings.current() ?? await gw.settings.get();
  const chat = translating(() => toChatRequest(req, settings.aliases));
  const echo = req.echo ? promptOf(req) : "";
  if (req.max_tokens === 0) {
    return await noTokens(gw, raw, userKey, { req, chat, echo, settings });
  }
  // Thoughts are left out of the text (a completion has no place for them).
  const answer = await answerChat(gw, chat, raw, userKey, { thinkTags: false });
  if (!req.stream) {
    const completion = await answer.json() as ChatCompletion;
    return markWhole(Response.json(toCompletion(completion, { echo })));
  }
  const stream = new CompletionStream(echo);
  const body = answer.body!.pipeThrough(respellChatStream({
    chunk: (chunk) => {
      const out = stream.chunk(chunk);
      return out ? `data: ${JSON.stringify(out)}\n\n` : "";
    },
    end: () => "data: [DONE]\n\n",
    // The same error event as chat's: OpenAI's SDKs raise it.
    fail: (error) => `data: ${JSON.stringify({ error: { ...error, param: null } })}\n\n`,
  }));
  return new Response(body, { headers: answer.headers });
}

/**
 * A request for no tokens (`max_tokens: 0`, with `echo` the way to get the prompt back): answered
 * without Gemini, with the prompt's estimated tokens, whole or as a one-chunk stream.
 */
async function noTokens(
  gw: Gateway,
  raw: Request,
  userKey: UserKeyRecord,
  q: { req: CompletionsRequest; chat: ChatCompletionRequest; echo: string; settings: Settings },
): Promise<Response> {
  const promptTokens = await estimateChatInput(
    gw,
    q.chat,
    q.settings,
    userKey.id,
    gw.clients.signalOf(raw),
  );
  const completion = emptyCompletion({
    id: randomId("cmpl-", 18),
    created: Math.floor(gw.now() / 1000),
    model: q.req.model,
    n: q.req.n ?? 1,
    echo: q.echo,
    promptTokens,
  });
  if (!q.req.stream) return markWhole(Response.json(completion));
  const { usage, ...chunk } = completion;
  let body = `data: ${JSON.stringify(chunk)}\n\n`;
  if (q.req.stream_options?.include_usage) {
    body += `data: ${JSON.stringify({ ...chunk, choices: [], usage })}\n\n`;
  }
  return new Response(body + "data: [DONE]\n\n", {
    headers: { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" },
  });
}
