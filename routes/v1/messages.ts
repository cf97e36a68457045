/**
 * `POST /v1/messages`: Anthropic's Messages API (Claude Code, `@anthropic-ai/sdk`), answered through
 * the chat path: the request is spelled as a chat request, and the chat answer (one JSON body or
 * an SSE stream) is spelled back as an Anthropic message or as its stream events. Claude model
 * names run on an alias of that name, else on `CLAUDE_STANDIN_MODEL`.
 * `POST /v1/messages/count_tokens` estimates. Errors take Anthropic's shape (see `lib/app.ts`).
 */
import { Hono } from "hono";
import { anthropicTypeOf } from "../../lib/anthropic/errors.ts";
import {
  type CountTokensRequest,
  CountTokensRequestSchema,
  type MessagesRequest,
  MessagesRequestSchema,
} from "../../lib/anthropic/messages_schema.ts";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import { renamingParam, translating } from "../../lib/openai/errors.ts";
import { readBody } from "../../lib/openai/request.ts";
import { respellChatStream } from "../../lib/respell_stream.ts";
import { randomId } from "../../lib/secrets.ts";
import type { UserKeyRecord } from "../../lib/store/user_keys.ts";
import type { ChatCompletion } from "../../lib/translate/chat_response.ts";
import {
  messagesModel,
  type ThinkingDefaults,
  toChatRequest,
} from "../../lib/translate/messages_request.ts";
import { resolveModel } from "../../lib/translate/models.ts";
import type { Settings } from "../../lib/store/settings.ts";
import {
  MessageBuilder,
  type MessageEvent,
  messageSse,
  pushChunk,
  toMessage,
} from "../../lib/translate/messages_response.ts";
import { markWhole } from "../../lib/whole_body.ts";
import { answerChat, estimateChatInput } from "./chat_completions.ts";

/** Builds the Messages API routes. */
export function messagesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/", (c) => createMessage(gw, c.req.raw, c.get("userKey")));
  app.post("/count_tokens", (c) => countTokens(gw, c.req.raw, c.get("userKey")));
  return app;
}

async function createMessage(
  gw: Gateway,
  raw: Request,
  userKey: UserKeyRecord,
): Promise<Response> {
  const req = await readBody(raw, MessagesRequestSchema);
  const { chat, paramOf } = await chatOf(gw, req);
  const context = { id: randomId("msg_", 18), model: req.model };
  // Thoughts come back as thinking blocks, never inside the text; errors name the caller's fields.
  const answer = await answerChat(gw, chat, raw, userKey, { thinkTags: false }).catch((err) => {
    throw renamingParam(err, paramOf);
  });
  if (!req.stream) {
    const completion = await answer.json() as ChatCompletion;
    return markWhole(Response.json(toMessage(completion, context)));
  }
  const builder = new MessageBuilder(context);
  const sse = (events: MessageEvent[]) => events.map(messageSse).join("");
  const stream = respellChatStream({
    chunk: (chunk) => sse(pushChunk(builder, chunk)),
    // A slow start: the message starts (once), and Anthropic's own ping keeps the line alive.
    beat: () => sse([...builder.start(), { type: "ping" }]),
    end: () => sse(builder.end()),
    // Its type tells Claude Code whether to retry (rate limited, overloaded).
    fail: (error) =>
      sse(builder.fail({ type: anthropicTypeOf(error.type), message: error.message })),
  });
  return new Response(answer.body!.pipeThrough(stream), { headers: answer.headers });
}

/**
 * `POST /v1/messages/count_tokens`: the gateway's estimate of the request's input tokens, as sent
 * to Gemini (no upstream call, so no quota spent; see `lib/pool/estimate.ts`).
 */
async function countTokens(
  gw: Gateway,
  raw: Request,
  userKey: UserKeyRecord,
): Promise<Response> {
  const req = await readBody(raw, CountTokensRequestSchema);
  const { chat, paramOf, settings } = await chatOf(gw, req);
  const signal = gw.clients.signalOf(raw);
  const tokens = await estimateChatInput(gw, chat, settings, userKey.id, signal).catch((err) => {
    throw renamingParam(err, paramOf);
  });
  return Response.json({ input_tokens: tokens });
}

/** `req` spelled as a chat request, under the current settings (aliases, thinking defaults). */
async function chatOf(gw: Gateway, req: MessagesRequest | CountTokensRequest) {
  const settings = gw.settings.current() ?? await gw.settings.get();
  const model = messagesModel(req.model, settings.aliases);
  return {
    ...translating(() => toChatRequest(req, model, thinkingDefaults(model, settings))),
    settings,
  };
}

/** What decides thinking for `model` (as `messagesModel` names it) when the request does not. */
function thinkingDefaults(model: string, settings: Settings): ThinkingDefaults {
  return {
    suffixed: resolveModel(model, settings.aliases).suffix !== null,
    mode: settings.thinkingMode,
  };
}
