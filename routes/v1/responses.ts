/**
 * `POST /v1/responses`: OpenAI's Responses API (the OpenAI SDKs' `responses.create`, Codex and the
 * Agents SDK), answered through the chat path: the request is spelled as a chat request, and the
 * chat answer (one JSON body or an SSE stream) is spelled back as a response object or as
 * Responses stream events. Answers are stored per user key (unless `store: false`) so that a later
 * request continues one with `previous_response_id`; `GET` and `DELETE /v1/responses/{id}` read
 * and remove them.
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import { OpenAiError, translating } from "../../lib/openai/errors.ts";
import { readBody } from "../../lib/openai/request.ts";
import {
  type InputItem,
  InputItemSchema,
  type ResponsesRequest,
  ResponsesRequestSchema,
} from "../../lib/openai/responses_schema.ts";
import { DAY_MS, deleteResponse, loadResponse, storeResponse } from "../../lib/store/responses.ts";
import { randomId } from "../../lib/secrets.ts";
import type { UserKeyRecord } from "../../lib/store/user_keys.ts";
import type { ChatCompletion } from "../../lib/translate/chat_response.ts";
import { inputItems, toChatRequest } from "../../lib/translate/responses_request.ts";
import {
  pushChunk,
  ResponseBuilder,
  type ResponseContext,
  type ResponseEcho,
  type ResponseEvent,
  type ResponseObject,
  responseSse,
  toResponse,
} from "../../lib/translate/responses_response.ts";
import { markWhole } from "../../lib/whole_body.ts";
import { respellChatStream, type Respeller } from "../../lib/respell_stream.ts";
import { answerChat } from "./chat_completions.ts";

/** Builds the Responses API routes. */
export function responsesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/", (c) => createResponse(gw, c.req.raw, c.get("userKey")));
  app.get("/:id", async (c) => {
    if (c.req.query("stream") === "true") {
      throw new OpenAiError(400, "Streaming a stored response again is not supported", {
        param: "stream",
        code: "unsupported_value",
      });
    }
    const id = c.req.param("id");
    const stored = await loadResponse(gw.kv, c.get("userKey").id, id, await stillKept(gw));
    if (!stored) throw notFound(id);
    return c.json(stored.response);
  });
  app.delete("/:id", async (c) => {
    const id = c.req.param("id");
    if (!await deleteResponse(gw.kv, c.get("userKey").id, id)) throw notFound(id);
    return c.json({ id, object: "response", deleted: true });
  });
  app.post("/:id/cancel", () => {
    throw new OpenAiError(400, "Only background responses can be cancelled, and there are none", {
      code: "unsupported_value",
    });
  });
  return app;
}

/** How long answers are kept now (the admin's setting), in milliseconds. */
async function retentionMs(gw: Gateway): Promise<number> {
  const settings = gw.settings.current() ?? await gw.settings.get();
  return settings.responsesRetentionDays * DAY_MS;
}

/** What `loadResponse` needs to tell a kept answer from one past its time. */
async function stillKept(gw: Gateway): Promise<{ now: number; ttlMs: number }> {
  return { now: gw.now(), ttlMs: await retentionMs(gw) };
}

function notFound(id: string, param: string | null = null): OpenAiError {
  return new OpenAiError(
    404,
    `No stored response found with id '${id}' for this key (answers are kept for the days the ` +
      "admin set, 30 by default, and not at all with store: false)",
    { param, code: "response_not_found" },
  );
}

const StoredItemsSchema = z.array(InputItemSchema);

/** The items a continued response holds: its input, then its output. */
async function historyOf(gw: Gateway, userId: string, id: string): Promise<InputItem[]> {
  const stored = await loadResponse(gw.kv, userId, id, await stillKept(gw));
  if (!stored) throw notFound(id, "previous_response_id");
  const items = StoredItemsSchema.safeParse([...stored.input, ...stored.response.output]);
  if (!items.success) throw notFound(id, "previous_response_id");
  return items.data;
}

/**
 * Stores an answer (not a failed one) with the items it answered, and says in it whether it was
 * stored: one too large to store, or a store that failed, answers `store: false`.
 */
async function keep(
  gw: Gateway,
  userId: string,
  response: ResponseObject,
  input: InputItem[],
): Promise<void> {
  if (!response.store || response.status === "failed") return;
  try {
    const ttlMs = await retentionMs(gw);
    response.store = ttlMs > 0 && await storeResponse(gw.kv, userId, { response, input }, ttlMs);
  } catch (err) {
    console.error("Storing a response failed:", err instanceof Error ? err.message : err);
    response.store = false;
  }
}

/** What the answer echoes of `req` (`store`: whether it will be stored). */
function echoOf(req: ResponsesRequest, store: boolean): ResponseEcho {
  return {
    instructions: req.instructions ?? null,
    max_output_tokens: req.max_output_tokens ?? null,
    parallel_tool_calls: req.parallel_tool_calls ?? true,
    previous_response_id: req.previous_response_id ?? null,
    reasoning: { effort: req.reasoning?.effort ?? null, summary: req.reasoning?.summary ?? null },
    store,
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
  const history = req.previous_response_id
    ? await historyOf(gw, userKey.id, req.previous_response_id)
    : [];
  const { chat, toolOrigins } = translating(() => toChatRequest(req, history));
  // What this answer continues from, for a later turn: the history and this request's input.
  const answered = [...history, ...inputItems(req.input)];
  const ctx: ResponseContext = {
    id: randomId("resp_", 18),
    createdAt: Math.floor(gw.now() / 1000),
    model: req.model,
    echo: echoOf(req, (req.store ?? true) && await retentionMs(gw) > 0),
    toolOrigins,
    itemId: (prefix) => randomId(prefix, 18),
  };
  // Thoughts come back as reasoning items, never inside the text.
  const answer = await answerChat(gw, chat, raw, userKey, { thinkTags: false });
  if (!req.stream) {
    const completion = await answer.json() as ChatCompletion;
    const response = toResponse(completion, ctx);
    await keep(gw, userKey.id, response, answered);
    return markWhole(Response.json(response));
  }
  const builder = new ResponseBuilder(ctx);
  const ended = (response: ResponseObject) => keep(gw, userKey.id, response, answered);
  return new Response(
    answer.body!.pipeThrough(respellChatStream(responsesRespeller(builder, ended))),
    {
      headers: answer.headers,
    },
  );
}

/** The Responses events of a chat stream; the response is stored before its last event. */
function responsesRespeller(
  builder: ResponseBuilder,
  ended: (response: ResponseObject) => Promise<void>,
): Respeller {
  const sse = (events: ResponseEvent[]) => events.map(responseSse).join("");
  return {
    chunk: (chunk) => sse(pushChunk(builder, chunk)),
    async end(send) {
      const events = builder.end();
      const last = events.pop()!;
      // The client has all but the end while the store is written.
      send(sse(events));
      await ended(last.response as ResponseObject);
      return responseSse(last);
    },
    fail: (error) => sse(builder.fail(error)),
  };
}
