/**
 * `POST /v1/chat/completions`: validate, resolve what the request references (files, images,
 * thought signatures), translate, run across the key pool (pinned to one key when files demand it),
 * translate back as one JSON body or a live SSE stream, and record usage once the answer is done.
 */
import { Hono } from "hono";
import { accountRequest, type RequestOutcome, requestTags } from "../../lib/accounting.ts";
import { assertModelAllowed } from "../../lib/auth/user_limits.ts";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import type { UserKeyRecord } from "../../lib/store/user_keys.ts";
import type { CallTarget } from "../../lib/gemini/generate.ts";
import {
  type ContinueOptions,
  generateWithRounds,
  StreamRounds,
  type StreamStep,
} from "../../lib/gemini/rounds.ts";
import { arrived } from "../../lib/arrived.ts";
import { markWhole } from "../../lib/whole_body.ts";
import { heartbeatResponse, SLOW } from "../../lib/heartbeat.ts";
import type { GenerateContentResponse } from "../../lib/gemini/types.ts";
import { offloadLargeInline, resolveChatInputs } from "../../lib/openai/chat_inputs.ts";
import { FileAccessError, pinnedFailure } from "../../lib/gemini/files.ts";
import {
  type ChatCompletionRequest,
  readChatCompletionRequest,
} from "../../lib/openai/chat_schema.ts";
import {
  failureToOpenAi,
  fileErrorToOpenAi,
  OpenAiError,
  translating,
  validationError,
} from "../../lib/openai/errors.ts";
import { readJson } from "../../lib/openai/request.ts";
import { estimateRequestTokens } from "../../lib/pool/estimate.ts";
import { failureOutcome, type GatewayFailure } from "../../lib/pool/failover.ts";
import { randomId } from "../../lib/secrets.ts";
import type { Attempt } from "../../lib/store/usage.ts";
import {
  chatRequestRefs,
  chatSettingsOf,
  mediaKey,
  normalizeModel,
  toGeminiChatRequest,
} from "../../lib/translate/chat_request.ts";
import type { Settings } from "../../lib/store/settings.ts";
import {
  type CompletionContext,
  hasFunctionCalls,
  plainToolCallId,
  toChatCompletion,
  type ToolCallNamer,
} from "../../lib/translate/chat_response.ts";
import { ChatStreamTranslator, streamErrorEvent } from "../../lib/translate/chat_stream.ts";
import { makeToolCallId, randomIdPart, signatureHash } from "../../lib/translate/tool_ids.ts";

const encoder = new TextEncoder();

const plainNamer: ToolCallNamer = () => plainToolCallId();

/**
 * Gives the function calls of `res`, made by `model`, their OpenAI ids: a call with a thought
 * signature (or with Gemini's own id) gets an id that points at a stored record; others get a
 * plain random id.
 */
async function nameCalls(
  gw: Gateway,
  res: GenerateContentResponse,
  model: string,
): Promise<ToolCallNamer> {
  const ids = new WeakMap<object, string>();
  for (const c of res.candidates ?? []) {
    for (const part of c.content?.parts ?? []) {
      const call = part.functionCall;
      if (!call) continue;
      const signature = part.thoughtSignature;
      if (!signature && call.id && !call.id.startsWith("call_")) {
        ids.set(call, call.id);
        continue;
      }
      if (!signature && !call.id) continue;
      const hash = await signatureHash(signature ?? "", call.id);
      const record = {
        ...(signature ? { signature } : {}),
        ...(call.id ? { geminiId: call.id } : {}),
        model,
      };
      if (gw.toolCalls.remember(hash, record)) ids.set(call, makeToolCallId(randomIdPart(), hash));
    }
  }
  return (call) => ids.get(call.source) ?? plainToolCallId();
}

/** Builds the chat-completions routes (see also the app's direct dispatch in `lib/app.ts`). */
export function chatCompletionsRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();
  app.post("/", (c) => chatCompletion(gw, c.req.raw, c.get("userKey")));
  return app;
}

/**
 * Answers one chat completion of `userKey` (authenticated and admitted by the caller). `finish`
 * gives a response the app's own headers (request id, CORS); a stream's is finished while the
 * upstream works on the request, and the caller sees it finished already.
 */
export async function chatCompletion(
  gw: Gateway,
  raw: Request,
  userKey: UserKeyRecord,
  finish: (res: Response) => Response = (res) => res,
): Promise<Response> {
  const parsed = readChatCompletionRequest(await readJson(raw));
  if (!parsed.success) throw validationError(parsed.error);
  return answerChat(gw, parsed.data, raw, userKey, { finish });
}

/**
 * The gateway's estimate of the input tokens of the chat request `req` of `userId` as it would be
 * sent to Gemini (see `lib/pool/estimate.ts`), for the APIs' token counting: files are looked up,
 * but media URLs are not downloaded (each counts as a picture does), and no upstream call is made,
 * so no quota is spent. Throws what the translation finds wrong with the request.
 */
export async function estimateChatInput(
  gw: Gateway,
  req: ChatCompletionRequest,
  settings: Settings,
  userId: string,
  signal: AbortSignal,
): Promise<number> {
  const { urls, ...refs } = chatRequestRefs(req);
  const inputs = await resolveChatInputs(gw, { ...refs, urls: [] }, { userId, signal });
  const media = new Map(inputs.refs.media);
  for (const u of urls) media.set(mediaKey(u.kind, u.value), { mimeType: "image/png", data: "" });
  const body = translating(() =>
    toGeminiChatRequest(req, {
      settings: chatSettingsOf(settings),
      refs: { ...inputs.refs, media },
    }).body
  );
  return estimateRequestTokens(body);
}

/** How `answerChat` answers, besides the request. */
export interface AnswerOptions {
  /** Gives the response the app's own headers (see `chatCompletion`). */
  finish?: (res: Response) => Response;
  /** Where thoughts go; by default the settings' choice (`reasoning_content` or `<think>` tags). */
  thinkTags?: boolean;
}

/**
 * Answers the chat request `req` of `userKey`, read from `raw` (whose client watch and request id
 * it uses): as one JSON chat completion, or as a chat-completion SSE stream. Other APIs spelled as
 * a chat request (`/v1/responses`) are answered through here too.
 */
export async function answerChat(
  gw: Gateway,
  req: ChatCompletionRequest,
  raw: Request,
  userKey: UserKeyRecord,
  options: AnswerOptions = {},
): Promise<Response> {
  const finish = options.finish ?? ((res: Response) => res);
  const settings = gw.settings.current() ?? await gw.settings.get();
  const signal = gw.clients.signalOf(raw);
  const startedAt = gw.now();

  const inputs = await resolveChatInputs(gw, chatRequestRefs(req), {
    userId: userKey.id,
    signal,
  });
  const { model, body } = translating(() =>
    toGeminiChatRequest(req, { settings: chatSettingsOf(settings), refs: inputs.refs })
  );
  await assertModelAllowed(gw, { userKey, model });
  const moving = offloadLargeInline(gw, body, { pinnedKeyId: inputs.pinnedKeyId, signal });
  const offload = moving instanceof Promise ? await moving : moving;
  // Every way out of here accounts the request, which releases the moved media; an error that
  // escapes before that releases it too.
  try {
    const target: CallTarget = {
      model,
      signal,
      pinnedKeyId: offload.pinnedKeyId,
      estimatedTokens: estimateRequestTokens(body),
    };
    const maxSet = req.max_completion_tokens != null || req.max_tokens != null;
    const continueOptions: ContinueOptions | null = settings.antiTruncation && (req.n ?? 1) === 1
      ? { rounds: settings.antiTruncationRounds, onMaxTokens: !maxSet }
      : null;
    // The answer's id and time: made once there is an answer to give them (for a stream, while the
    // upstream works), not before the upstream call.
    const contextOf = (): CompletionContext => ({
      id: randomId("chatcmpl-", 18),
      created: Math.floor(gw.now() / 1000),
      model: normalizeModel(req.model),
      logprobs: req.logprobs === true,
      thinkTags: options.thinkTags ?? settings.thoughtsFormat === "think_tags",
    });
    const account = (
      attempts: Attempt[],
      outcome: Pick<RequestOutcome, "ok" | "served" | "status" | "errorClass" | "usage">,
    ) => {
      accountRequest(gw, {
        model,
        userId: userKey.id,
        attempts: [...offload.attempts, ...attempts],
        startedAt,
        ...requestTags(gw, raw),
        ...outcome,
      });
      // The answer is complete (or failed): the media moved to Files for it is of no more use.
      offload.release();
    };
    const fail = async (failure: GatewayFailure, attempts: Attempt[]): Promise<never> => {
      account(attempts, failureOutcome(failure));
      if (target.pinnedKeyId && failure.kind !== "client" && failure.kind !== "client_closed") {
        // The one key that holds this request's files cannot serve: say why, plainly.
        const err = await pinnedFailure(gw, {
          keyId: target.pinnedKeyId,
          what: "A file of this request",
          failure,
        }).catch((e) => e);
        throw err instanceof FileAccessError ? fileErrorToOpenAi(err) : err;
      }
      if (
        failure.kind === "client" && failure.status === 403 && target.pinnedKeyId &&
        /permission to access the File/i.test(failure.message)
      ) {
        // The key that uploaded the file cannot see it: the file is gone upstream.
        throw new OpenAiError(
          404,
          "A file of this request is no longer available at Gemini (deleted there, or past its " +
            `48-hour expiry); upload it again. Gemini said: ${failure.message}`,
          { code: "file_not_found" },
        );
      }
      throw failureToOpenAi(failure);
    };

    if (!req.stream) {
      const result = await generateWithRounds(gw, { ...target, body }, continueOptions);
      if (!result.ok) return await fail(result.failure, result.attempts);
      account(result.attempts, { ok: true, status: 200, usage: result.value.usageMetadata });
      const ctx = contextOf();
      ctx.nameCall = hasFunctionCalls(result.value)
        ? await nameCalls(gw, result.value, model)
        : plainNamer;
      return markWhole(Response.json(toChatCompletion(result.value, ctx)));
    }

    const upstream = new AbortController();
    const stopUpstream = () => upstream.abort();
    signal.addEventListener("abort", stopUpstream, { once: true });
    let rounds: StreamRounds | null = null;
    let answer: ChatStreamAnswer | null = null;
    // The answer's parts are made while the upstream works on the request, or once it has answered.
    const prepare = () =>
      answer ??= chatStreamAnswer(gw, {
        ctx: contextOf(),
        model,
        includeUsage: req.stream_options?.include_usage === true,
        rounds: () => rounds!,
        unwatch: () => signal.removeEventListener("abort", stopUpstream),
        account,
      });
    const opening = StreamRounds.open(gw, {
      target,
      body,
      options: continueOptions,
      upstream,
      sent: () => void prepare(),
    });
    /** The answer once the upstream stream is open: sent whole when it is all in hand already. */
    const respond = (opened: StreamRounds): Response => {
      rounds = opened;
      const { live, whole } = prepare();
      const text = whole();
      return text === null ? live() : markWhole(new Response(text, { headers: SSE_HEADERS }));
    };
    const failed = (failure: GatewayFailure, attempts: Attempt[]): Promise<never> => {
      signal.removeEventListener("abort", stopUpstream);
      return fail(failure, attempts);
    };
    const heartbeatMs = settings.streamHeartbeatSeconds * 1000;
    const opened = await gw.slowStarts.race(opening, heartbeatMs);
    if (opened !== SLOW) {
      if (!opened.ok) return await failed(opened.failure, opened.attempts);
      return finish(respond(opened.value));
    }
    // The upstream is slow to start: the client gets heartbeats until it does. A failure after that
    // can no longer change the status: it arrives as the stream's error event.
    const later = opening.then(
      (o) => o.ok ? respond(o.value) : failed(o.failure, o.attempts),
    ).catch((err) => {
      const message = `The upstream stream failed: ${err instanceof Error ? err.message : err}`;
      const error = err instanceof OpenAiError
        ? err
        : new OpenAiError(502, message, { code: "upstream_error" });
      return new Response(`data: ${JSON.stringify(error.toBody())}\n\n`, { headers: SSE_HEADERS });
    });
    return finish(heartbeatResponse(later, {
      everyMs: heartbeatMs,
      headers: SSE_HEADERS,
      cancel: stopUpstream,
    }));
  } catch (err) {
    offload.release();
    throw err;
  }
}

/** The headers of a chat stream's response. */
const SSE_HEADERS = {
  "content-type": "text/event-stream; charset=utf-8",
  "cache-control": "no-cache",
  "x-accel-buffering": "no",
};

/** What a chat stream's response is made of. */
interface ChatStreamParts {
  ctx: CompletionContext;
  /** The upstream model (its thought signatures are stored with it). */
  model: string;
  includeUsage: boolean;
  /** The upstream stream, opened by the time the body is first read. */
  rounds: () => StreamRounds;
  /** The stream is over: the client's going away no longer matters to the upstream. */
  unwatch: () => void;
  /** Records the request's usage once the stream is over. */
  account: (
    attempts: Attempt[],
    outcome: Pick<RequestOutcome, "ok" | "served" | "status" | "errorClass" | "usage">,
  ) => void;
}

/** A chat stream's answer, in one of two forms. */
interface ChatStreamAnswer {
  /**
   * The live SSE response: its body is read, translated and sent as the upstream sends. Made only
   * when needed: a `ReadableStream`, even one never read, makes Deno's young objects outlive their
   * first garbage collection (each request's whole object graph, measured), so an answer sent
   * whole makes none.
   */
  live: () => Response;
  /**
   * The whole SSE body when the upstream has sent all of the answer by now (a short answer that
   * came at once), or null: then `live` is the answer, and sends what this took first. Called
   * once, after the upstream stream has opened.
   */
  whole: () => string | null;
}

/**
 * The SSE answer of a chat stream. Its parts (translator, context) can be made before the upstream
 * has answered, so they are made while the upstream works. An answer that is all in hand once the
 * upstream has answered leaves as one body: no stream to set up and pull, nothing to wait for.
 */
function chatStreamAnswer(gw: Gateway, parts: ChatStreamParts): ChatStreamAnswer {
  const { ctx, unwatch, account } = parts;
  const translator = new ChatStreamTranslator(ctx, { includeUsage: parts.includeUsage });
  let done = false;
  /**
   * Ends the answer: lets go of the upstream, records the request, and returns what is left to
   * send (`pending`, events made but not sent yet, and the last events).
   */
  const ending = (rounds: StreamRounds, pending: string, error?: string): string => {
    done = true;
    unwatch();
    rounds.close();
    account(rounds.attempts, {
      ok: !error,
      // A stream that broke after Gemini's first event still gave the client part of an answer.
      served: !error || rounds.usage !== undefined,
      status: 200,
      errorClass: error ? "stream_error" : undefined,
      usage: rounds.usage,
    });
    let out = pending;
    if (error) {
      out += `data: ${JSON.stringify(streamErrorEvent(error, "upstream_stream_error"))}\n\n`;
    } else {
      for (const chunk of translator.end()) out += translator.sse(chunk);
      out += "data: [DONE]\n\n";
    }
    return out;
  };
  const finish = (
    controller: ReadableByteStreamController,
    rounds: StreamRounds,
    pending: string,
    error?: string,
  ) => {
    controller.enqueue(encoder.encode(ending(rounds, pending, error)));
    controller.close();
  };
  const broke = (err: unknown) =>
    `Upstream stream broke: ${err instanceof Error ? err.message : err}`;
  /** Events `whole` made that the live stream sends first. */
  let carried = "";

  // The next step, when a pull stopped waiting for it (it had not arrived yet).
  let pending: Promise<StreamStep> | null = null;
  const nextStep = (rounds: StreamRounds): Promise<StreamStep> => {
    const step = pending ?? rounds.next();
    pending = null;
    return step;
  };
  // A byte stream: Deno sends its chunks with less work than a default stream's.
  const live = () =>
    new Response(
      new ReadableStream({
        type: "bytes",
        async pull(controller) {
          // What arrived together leaves together, as one write: the steps are taken while they are
          // in hand, then sent before waiting for the network (so no event waits for a later one). A
          // pull must enqueue something (or end the stream), or the stream stalls: upstream chunks
          // that translate to nothing (usage only, overlap held back) are skipped over. The end of
          // the answer waits for the end of the upstream body, and leaves with it.
          const rounds = parts.rounds();
          let out = carried;
          carried = "";
          try {
            while (!done) {
              // Steps already received are taken without a promise; others are waited for.
              let step = pending === null ? rounds.poll() : null;
              if (step === null) {
                if (out === "" || rounds.finishing) step = await nextStep(rounds);
                else {
                  const next = nextStep(rounds);
                  const now = await arrived(next);
                  if (now === null) {
                    pending = next;
                    break;
                  }
                  step = now.value;
                }
              }
              if (done) return;
              if (step.kind === "end") return finish(controller, rounds, out);
              if (step.kind === "error") return finish(controller, rounds, out, step.message);
              ctx.nameCall = hasFunctionCalls(step.value)
                ? await nameCalls(gw, step.value, parts.model)
                : plainNamer;
              for (const chunk of translator.push(step.value)) out += translator.sse(chunk);
            }
            if (out !== "" && !done) controller.enqueue(encoder.encode(out));
          } catch (err) {
            if (done) return;
            finish(controller, rounds, out, broke(err));
          }
        },
        cancel() {
          // The client went away: stop the upstream and keep what was used.
          const rounds = parts.rounds();
          done = true;
          unwatch();
          rounds.close();
          account(rounds.attempts, {
            ok: true,
            status: 200,
            errorClass: "client_closed",
            usage: rounds.usage,
          });
        },
      }),
      { headers: SSE_HEADERS },
    );
  const whole = (): string | null => {
    const rounds = parts.rounds();
    let out = "";
    try {
      while (true) {
        const step = rounds.poll();
        if (step === null) break;
        if (step.kind !== "chunk") {
          return ending(rounds, out, step.kind === "error" ? step.message : undefined);
        }
        if (hasFunctionCalls(step.value)) {
          // Its calls are named with a wait (KV): the live stream takes it from here.
          pending = Promise.resolve(step);
          break;
        }
        ctx.nameCall = plainNamer;
        for (const chunk of translator.push(step.value)) out += translator.sse(chunk);
      }
    } catch (err) {
      return ending(rounds, out, broke(err));
    }
    carried = out;
    return null;
  };
  return { live, whole };
}
