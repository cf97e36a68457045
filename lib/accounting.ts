/**
 * What happens when a client request is complete (its last byte sent, or the client gone):
 * usage counters are written in the background. Every route that calls the upstream ends here,
 * so per-request bookkeeping (usage, logs, limits) has one home.
 */
import type { Gateway } from "./gateway.ts";
import type { UsageMetadata } from "./gemini/types.ts";
import { type Attempt, recordUsage } from "./store/usage.ts";

/** One completed client request. */
export interface RequestOutcome {
  /** The upstream model the request was served with. */
  model: string;
  userId: string | null;
  attempts: Attempt[];
  /** True when a key served the request. */
  ok: boolean;
  /** HTTP status the client got (200 for a stream that started). */
  status: number;
  /** When the request started, from `gw.now()`. */
  startedAt: number;
  /** Failure class when not ok (`client`, `no_key`, `upstream`, `stream_error`, ...). */
  errorClass?: string;
  usage?: UsageMetadata;
}

/** Records a completed request without delaying the client. */
export function accountRequest(gw: Gateway, outcome: RequestOutcome): void {
  const u = outcome.usage;
  gw.background.run("Usage accounting", () =>
    recordUsage(gw.kv, {
      now: gw.now(),
      model: outcome.model,
      userId: outcome.userId,
      attempts: outcome.attempts,
      ok: outcome.ok,
      promptTokens: (u?.promptTokenCount ?? 0) + (u?.toolUsePromptTokenCount ?? 0),
      completionTokens: (u?.candidatesTokenCount ?? 0) + (u?.thoughtsTokenCount ?? 0),
      thinkingTokens: u?.thoughtsTokenCount ?? 0,
    }));
}
