/**
 * `POST /v1/responses`: OpenAI's Responses API (the OpenAI SDKs' `responses.create`, Codex and the
 * Agents SDK), answered through the chat path: the request is spelled as a chat request, and the
 * chat answer (one JSON body or an SSE stream) is spelled back as a response object or as
 * Responses stream events. Answers are stored per user key (unless `store: false`) so that a later
 * request continues one with `previous_response_id`; `GET` and `DELETE /v1/responses/{id}` read
 * and remove them, and `GET /v1/responses/{id}/input_items` lists what one was made from.
 * `POST /v1/responses/input_tokens` estimates a request's input tokens.
 */
import { Hono } from "hono";
import * as z from "zod";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import {
  OpenAiError,
  renamingParam,
  translating,
  validationError,
} from "../../lib/openai/errors.ts";
import { readBody } from "../../lib/openai/request.ts";
import {
  type InputItem,
  InputItemSchema,
  InputTokensRequestSchema,
  type ResponsesRequest,
  ResponsesRequestSchema,
} from "../../lib/openai/responses_schema.ts";
import {
  DAY_MS,
  deleteResponse,
  loadConversation,
  loadResponse,
  MAX_CHAIN,
  MAX_CONVERSATION_BYTES,
  storedBytes,
  storeResponse,
} from "../../lib/store/responses.ts";
import type { Settings } from "../../lib/store/settings.ts";
import { randomId } from "../../lib/secrets.ts";
import type { UserKeyRecord } from "../../lib/store/user_keys.ts";
import type { ChatCompletion } from "../../lib/translate/chat_response.ts";
import {
  inputItemsOf,
  InputItemsQuerySchema,
  type ListedTurn,
  pageOf,
} from "../../lib/translate/responses_items.ts";
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
import { answerChat, estimateChatInput } from "./chat_completions.ts";

/** Builds the Responses API routes. */
export function responsesRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/", (c) => createResponse(gw, c.req.raw, c.get("userKey")));
  app.post("/input_tokens", (c) => countInputTokens(gw, c.req.raw, c.get("userKey")));
  app.get("/:id", async (c) => {
    if (c.req.query("stream") === "true") {
      throw new OpenAiError(400, "Streaming a stored response again is not supported", {
        param: "stream",
        code: "unsupported_value",
      });
    }
    const id = c.req.param("id");
    const stored = isResponseId(id)
      ? await loadResponse(gw.kv, c.get("userKey").id, id, {
        now: gw.now(),
        ttlMs: retentionMs(await settingsOf(gw)),
      })
      : null;
    if (!stored) throw notFound(id);
    return c.json(stored.response);
  });
  app.get(
    "/:id/input_items",
    (c) => listInputItems(gw, c.get("userKey").id, c.req.param("id"), c.req.query()),
  );
  app.delete("/:id", async (c) => {
    const id = c.req.param("id");
    if (!isResponseId(id) || !await deleteResponse(gw.kv, c.get("userKey").id, id)) {
      throw notFound(id);
    }
    return c.json({ id, object: "response", deleted: true });
  });
  app.post("/:id/cancel", () => {
    throw new OpenAiError(400, "Only background responses can be cancelled, and there are none", {
      code: "unsupported_value",
    });
  });
  return app;
}

async function settingsOf(gw: Gateway): Promise<Settings> {
  return gw.settings.current() ?? await gw.settings.get();
}

/** How long answers are kept under `settings`, in milliseconds. */
function retentionMs(settings: Settings): number {
  return settings.responsesRetentionDays * DAY_MS;
}

/** The ids the gateway gives answers (anything else names none, and goes nowhere near KV). */
const RESPONSE_ID = /^resp_[A-Za-z0-9_-]{1,64}$/;

function isResponseId(id: string): boolean {
  return RESPONSE_ID.test(id);
}

function notFound(id: string, param: string | null = null): OpenAiError {
  const shown = id.length > 80 ? `${id.slice(0, 80)}…` : id;
  return new OpenAiError(
    404,
    `No stored response found with id '${shown}' for this key (answers are kept for the days ` +
      "the admin set, 30 by default; not at all with store: false, when a turn's own input " +
      "and output exceed 720 kB, or past the key's storage cap)",
    { param, code: "response_not_found" },
  );
}

const StoredItemsSchema = z.array(InputItemSchema);

/**
 * The stored conversation up to the answer `id` (kept `ttlMs`), oldest turn first; a 404 (naming
 * `param`) when it or an earlier answer is no longer stored.
 */
async function conversationOf(
  gw: Gateway,
  userId: string,
  id: string,
  ttlMs: number,
  param: string | null,
): Promise<{ turns: ListedTurn[]; bytes: number }> {
  if (!isResponseId(id)) throw notFound(id, param);
  const conversation = await loadConversation(gw.kv, userId, id, { now: gw.now(), ttlMs });
  if (!conversation.ok) {
    if (conversation.missing === id) throw notFound(id, param);
    throw new OpenAiError(
      404,
      `An earlier answer of this conversation ('${conversation.missing}') is no longer stored ` +
        "(deleted, or past the retention)" +
        (param ? ": send the whole conversation in 'input' instead" : ""),
      { param, code: "response_not_found" },
    );
  }
  const turns = conversation.turns.map((turn) => {
    const input = StoredItemsSchema.safeParse(turn.input);
    if (!input.success) throw notFound(id, param);
    return { id: turn.id, input: input.data, output: turn.output };
  });
  return { turns, bytes: conversation.bytes };
}

/**
 * A conversation a request continues: the items of its turns, the ids of its answers and the
 * bytes they are stored in.
 */
interface History {
  items: InputItem[];
  chain: string[];
  bytes: number;
}

/** The conversation a request continues from the stored answer `id` (kept `ttlMs`). */
async function historyOf(
  gw: Gateway,
  userId: string,
  id: string,
  ttlMs: number,
): Promise<History> {
  const param = "previous_response_id";
  const { turns, bytes } = await conversationOf(gw, userId, id, ttlMs, param);
  if (turns.length >= MAX_CHAIN) {
    throw new OpenAiError(
      400,
      `This conversation has ${turns.length} answers, the most the gateway chains ` +
        "by previous_response_id: send the whole conversation in 'input' instead",
      { param, code: "conversation_too_long" },
    );
  }
  if (bytes > MAX_CONVERSATION_BYTES) {
    throw new OpenAiError(
      400,
      `This conversation's stored answers hold ${bytes} bytes, more than the ` +
        `${MAX_CONVERSATION_BYTES} the gateway continues by previous_response_id: send the ` +
        "conversation (shortened) in 'input' instead",
      { param, code: "conversation_too_long" },
    );
  }
  // Each turn's input was read already; its output items are read as input items.
  const items: InputItem[] = [];
  for (const turn of turns) {
    const output = StoredItemsSchema.safeParse(turn.output);
    if (!output.success) throw notFound(id, param);
    items.push(...turn.input, ...output.data);
  }
  return { items, chain: turns.map((t) => t.id), bytes };
}

/** `GET /v1/responses/{id}/input_items`: a page of what the stored answer `id` was made from. */
async function listInputItems(
  gw: Gateway,
  userId: string,
  id: string,
  query: Record<string, string>,
): Promise<Response> {
  const q = InputItemsQuerySchema.safeParse(query);
  if (!q.success) throw validationError(q.error);
  const { turns } = await conversationOf(gw, userId, id, retentionMs(await settingsOf(gw)), null);
  const page = pageOf(inputItemsOf(turns), q.data);
  if (!page.ok) {
    throw new OpenAiError(400, `No input item '${page.id}' in response '${id}'`, {
      param: page.param,
      code: "invalid_value",
    });
  }
  return Response.json({
    object: "list",
    data: page.data,
    first_id: page.data[0]?.id ?? null,
    last_id: page.data.at(-1)?.id ?? null,
    has_more: page.has_more,
  });
}

/** What is stored of a turn, and for how long. */
interface Turn {
  input: InputItem[];
  ancestors: string[];
  /** Bytes the answers it continues are stored in. */
  earlierBytes: number;
  ttlMs: number;
  /** Bytes the user key's cap leaves for it (read while the answer is made). */
  room: Promise<number>;
}

/**
 * Stores an answer (not a failed one) for `ttlMs` with its turn's input and the answers before
 * it, and says in it whether it was stored: one too large to store, past the key's cap, or whose
 * store failed answers `store: false`.
 */
async function keep(
  gw: Gateway,
  userId: string,
  response: ResponseObject,
  turn: Turn,
): Promise<void> {
  if (!response.store || response.status === "failed") return;
  const { ttlMs, room, earlierBytes, ...record } = turn;
  try {
    response.store = await storeResponse(gw.kv, userId, { response, ...record }, ttlMs, {
      roomBytes: await room,
      earlierBytes,
    });
  } catch (err) {
    console.error("Storing a response failed:", err instanceof Error ? err.message : err);
    response.store = false;
  }
}

/**
 * Bytes the cap of `settings` leaves `userId` for one more answer; read from KV only when the
 * answer is to be stored and there is a cap (a failed read leaves room: the store decides).
 */
function roomOf(
  gw: Gateway,
  userId: string,
  settings: Settings,
  store: boolean,
): Promise<number> {
  const cap = settings.responsesStorageMb * 1_000_000;
  if (!store || cap === 0) return Promise.resolve(Infinity);
  return storedBytes(gw.kv, userId, gw.now()).then((used) => cap - used, () => Infinity);
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
  const settings = await settingsOf(gw);
  const ttlMs = retentionMs(settings);
  const history = req.previous_response_id
    ? await historyOf(gw, userKey.id, req.previous_response_id, ttlMs)
    : { items: [], chain: [], bytes: 0 };
  const { chat, toolOrigins, paramOf } = translating(() => toChatRequest(req, history.items));
  // Stored unless the caller says not to, or the admin keeps none.
  const store = (req.store ?? true) && ttlMs > 0;
  // What is stored of this turn: its own input, and the answers it continues.
  const turn: Turn = {
    input: inputItems(req.input),
    ancestors: history.chain,
    earlierBytes: history.bytes,
    ttlMs,
    room: roomOf(gw, userKey.id, settings, store),
  };
  const ctx: ResponseContext = {
    id: randomId("resp_", 18),
    createdAt: Math.floor(gw.now() / 1000),
    model: req.model,
    echo: echoOf(req, store),
    toolOrigins,
    itemId: (prefix) => randomId(prefix, 18),
  };
  // Thoughts come back as reasoning items, never inside the text; errors name the caller's fields.
  const answer = await answerChat(gw, chat, raw, userKey, { thinkTags: false }).catch((err) => {
    throw renamingParam(err, paramOf);
  });
  if (!req.stream) {
    const completion = await answer.json() as ChatCompletion;
    const response = toResponse(completion, ctx);
    await keep(gw, userKey.id, response, turn);
    return markWhole(Response.json(response));
  }
  const builder = new ResponseBuilder(ctx);
  const ended = (response: ResponseObject) => keep(gw, userKey.id, response, turn);
  return new Response(
    answer.body!.pipeThrough(respellChatStream(responsesRespeller(builder, ended))),
    {
      headers: answer.headers,
    },
  );
}

/**
 * `POST /v1/responses/input_tokens`: the gateway's estimate of a request's input tokens, with the
 * conversation its `previous_response_id` continues, as it would be sent to Gemini (no upstream
 * call, see `estimateChatInput`).
 */
async function countInputTokens(
  gw: Gateway,
  raw: Request,
  userKey: UserKeyRecord,
): Promise<Response> {
  const req = await readBody(raw, InputTokensRequestSchema);
  const settings = await settingsOf(gw);
  const history = req.previous_response_id
    ? await historyOf(gw, userKey.id, req.previous_response_id, retentionMs(settings))
    : { items: [] };
  // Nothing to answer is still something to count (instructions, tools): an empty turn stands in.
  const empty = !history.items.length && (req.input === "" || req.input.length === 0);
  const counted = empty ? { ...req, input: " " } : req;
  const { chat, paramOf } = translating(() => toChatRequest(counted, history.items));
  const signal = gw.clients.signalOf(raw);
  const tokens = await estimateChatInput(gw, chat, settings, userKey.id, signal).catch((err) => {
    throw renamingParam(err, paramOf);
  });
  return Response.json({ object: "response.input_tokens", input_tokens: tokens });
}

/** The Responses events of a chat stream; the response is stored before its last event. */
function responsesRespeller(
  builder: ResponseBuilder,
  ended: (response: ResponseObject) => Promise<void>,
): Respeller {
  const sse = (events: ResponseEvent[]) => events.map(responseSse).join("");
  return {
    chunk: (chunk) => sse(pushChunk(builder, chunk)),
    // A slow start: the response is created (once), and the comment keeps the line alive.
    beat: (comment) => sse(builder.start()) + comment,
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
