/**
 * `POST /v1/responses`: OpenAI's Responses API (the OpenAI SDKs' `responses.create`, Codex and the
 * Agents SDK), answered through the chat path: the request is spelled as a chat request, and the
 * chat answer (one JSON body or an SSE stream) is spelled back as a response object or as
 * Responses stream events.
 */
import { Hono } from "hono";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import { OpenAiError, translating } from "../../lib/openai/errors.ts";
import { readBody } from "../../lib/openai/request.ts";
import {
  type ResponsesRequest,
  ResponsesRequestSchema,
} from "../../lib/openai/responses_schema.ts";
import { randomId } from "../../lib/secrets.ts";
import type { UserKeyRecord } from "../../lib/store/user_keys.ts";
import type { ChatCompletion } from "../../lib/translate/chat_response.ts";
import type { ChatCompletionChunk } from "../../lib/translate/chat_stream.ts";
import { toChatRequest } from "../../lib/translate/responses_request.ts";
import {
  pushChunk,
  ResponseBuilder,
  type ResponseContext,
  type ResponseEcho,
  type ResponseEvent,
  responseSse,
  toResponse,
} from "../../lib/translate/responses_response.ts";
import { markWhole } from "../../lib/whole_body.ts";
import { answerChat } from "./chat_completions.ts";

/** Builds the Responses API routes. */
export function responsesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/", (c) => createResponse(gw, c.req.raw, c.get("userKey")));
  return app;
}

/** What the answer echoes of `req`. */
function echoOf(req: ResponsesRequest): ResponseEcho {
  return {
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    parallel_tool_calls: req.parallel_tool_calls ?? true,
    previous_response_id: req.previous_response_id ?? null,
    reasoning: { effort: req.reasoning?.effort ?? null, summary: req.reasoning?.summary ?? null },
    store: false,
    temperature: req.temperature ?? null,
    text: { format: req.text?.format ?? { type: "text" } },
    tool_choice: req.tool_choice ?? "auto",
    tools: req.tools ?? [],
    top_p: req.top_p ?? null,
    truncation: req.truncation ?? "disabled",
    user: req.user ?? null,
    metadata: req.metadata ?? {},
  };
}

async function createResponse(
  gw: Gateway,
  raw: Request,
  userKey: UserKeyRecord,
): Promise<Response> {
  const req = await readBody(raw, ResponsesRequestSchema);
  if (req.background) {
    throw new OpenAiError(400, "Background responses are not supported: leave 'background' unset", {
      param: "background",
      code: "unsupported_value",
    });
  }
  if (req.previous_response_id) {
    throw new OpenAiError(
      400,
      "'previous_response_id' is not supported: the gateway does not store responses; send the " +
        "whole conversation in 'input'",
      { param: "previous_response_id", code: "unsupported_value" },
    );
  }
  const { chat, customTools } = translating(() => toChatRequest(req));
  const ctx: ResponseContext = {
    id: randomId("resp_", 18),
    createdAt: Math.floor(gw.now() / 1000),
    model: req.model,
    echo: echoOf(req),
    customTools,
    itemId: (prefix) => randomId(prefix, 18),
  };
  // Thoughts come back as reasoning items, never inside the text.
  const answer = await answerChat(gw, chat, raw, userKey, { thinkTags: false });
  if (!req.stream) {
    const completion = await answer.json() as ChatCompletion;
    return markWhole(Response.json(toResponse(completion, ctx)));
  }
  return new Response(answer.body!.pipeThrough(responsesStream(new ResponseBuilder(ctx))), {
    headers: answer.headers,
  });
}

const encoder = new TextEncoder();

/**
 * Respells a chat-completion SSE stream as Responses events: chunks become events, comments (the
 * heartbeats of a slow start) pass as they are, an error event fails the response.
 */
function responsesStream(builder: ResponseBuilder): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let buffer = "";
  let ended = false;
  const translate = (event: string): string => {
    if (ended || event === "") return "";
    if (event.startsWith(":")) return `${event}\n\n`;
    const data = event.startsWith("data: ") ? event.slice(6) : null;
    if (data === null) return "";
    let events: ResponseEvent[];
    if (data === "[DONE]") {
      ended = true;
      events = builder.end();
    } else {
      const parsed = JSON.parse(data) as ChatCompletionChunk | {
        error: { message: string; code: string | null };
      };
      if ("error" in parsed) {
        ended = true;
        events = builder.fail({
          code: parsed.error.code ?? "upstream_error",
          message: parsed.error.message,
        });
      } else events = pushChunk(builder, parsed);
    }
    let out = "";
    for (const e of events) out += responseSse(e);
    return out;
  };
  const drain = (controller: TransformStreamDefaultController<Uint8Array>) => {
    let out = "";
    let at: number;
    while ((at = buffer.indexOf("\n\n")) !== -1) {
      out += translate(buffer.slice(0, at));
      buffer = buffer.slice(at + 2);
    }
    if (out) controller.enqueue(encoder.encode(out));
  };
  return new TransformStream({
    transform(chunk, controller) {
      buffer += decoder.decode(chunk, { stream: true });
      drain(controller);
    },
    flush(controller) {
      buffer += decoder.decode();
      drain(controller);
      if (!ended) {
        // The chat stream ended without its end: say so rather than pass it as complete.
        const events = builder.fail({
          code: "upstream_stream_error",
          message: "The answer's stream ended early",
        });
        controller.enqueue(encoder.encode(events.map(responseSse).join("")));
      }
    },
  });
}
