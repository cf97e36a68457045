/**
 * The chat every benchmark request carries, and the Gemini request the gateway makes of it: the
 * upstream-direct and forwarder paths send that very request, so the upstream does the same work
 * (thoughts included, same safety settings) whichever path a request takes.
 *
 * @module
 */
import { ChatCompletionRequestSchema } from "../../lib/openai/chat_schema.ts";
import { SettingsSchema } from "../../lib/store/settings.ts";
import { chatSettingsOf, toGeminiChatRequest } from "../../lib/translate/chat_request.ts";

/** The model of every benchmark request. */
export const BENCH_MODEL = "gemini-2.5-flash";

/** The short two-message conversation every request carries. */
export const BENCH_CHAT = {
  model: BENCH_MODEL,
  messages: [
    { role: "system" as const, content: "You are a terse assistant." },
    { role: "user" as const, content: "Say hello to the benchmark in five words." },
  ],
};

/** The Gemini request body the gateway sends for `chat` with its default settings. */
export function upstreamBodyOf(chat: unknown = BENCH_CHAT): unknown {
  return toGeminiChatRequest(ChatCompletionRequestSchema.parse(chat), {
    settings: chatSettingsOf(SettingsSchema.parse({})),
  }).body;
}
