import assert from "node:assert/strict";
import { classifyHttpFailure, deploymentProblem, parseDuration } from "../../lib/gemini/errors.ts";
import { redactSecret } from "../../lib/pool/failover.ts";
import {
  isEmptyAnswer,
  isEmptyStream,
  refusesThinking,
  withoutThinking,
} from "../../lib/gemini/generate.ts";
import type { GenerateContentResponse } from "../../lib/gemini/types.ts";

function google(code: number, status: string, message: string, details?: unknown[]) {
  return JSON.stringify({ error: { code, status, message, ...(details ? { details } : {}) } });
}

Deno.test("an invalid or expired key is recognised by ErrorInfo reason, not by HTTP status", () => {
  const body = google(400, "INVALID_ARGUMENT", "API key expired. Please renew the API key.", [
    {
      "@type": "type.googleapis.com/google.rpc.ErrorInfo",
      reason: "API_KEY_INVALID",
      domain: "googleapis.com",
    },
  ]);
  assert.equal(classifyHttpFailure(400, body).kind, "key_invalid");
  const plain400 = google(400, "INVALID_ARGUMENT", "Invalid JSON payload received.");
  assert.equal(classifyHttpFailure(400, plain400).kind, "client");
});

Deno.test("a redirect from the upstream is upstream trouble, never the client's answer", () => {
  for (const status of [301, 302, 307, 308]) {
    const failure = classifyHttpFailure(status, "");
    assert.equal(failure.kind, "upstream");
    assert.match(failure.reason, new RegExp(`redirect \\(HTTP ${status}\\)`));
  }
});

Deno.test("leaked, suspended, denied and disabled keys are invalid; a foreign file is a client error", () => {
  for (
    const message of [
      "Your API key was reported as leaked. Please use another API key.",
      "Permission denied: Consumer 'api_key:AIza' has been suspended.",
      "Your project has been denied access. Please contact support.",
    ]
  ) {
    assert.equal(
      classifyHttpFailure(403, google(403, "PERMISSION_DENIED", message)).kind,
      "key_invalid",
      message,
    );
  }
  const disabled = google(
    403,
    "PERMISSION_DENIED",
    "Generative Language API has not been used in project 1 before",
    [
      { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason: "SERVICE_DISABLED" },
    ],
  );
  assert.equal(classifyHttpFailure(403, disabled).kind, "key_invalid");
  const file = google(
    403,
    "PERMISSION_DENIED",
    "You do not have permission to access the File files/x or it may not exist.",
  );
  assert.equal(classifyHttpFailure(403, file).kind, "client");
  for (const reason of ["API_KEY_IP_ADDRESS_BLOCKED", "API_KEY_HTTP_REFERRER_BLOCKED"]) {
    const restricted = google(403, "PERMISSION_DENIED", "Requests from this client are blocked.", [
      { "@type": "type.googleapis.com/google.rpc.ErrorInfo", reason },
    ]);
    assert.equal(classifyHttpFailure(403, restricted).kind, "key_invalid", reason);
  }
});

Deno.test("a 403 a request can provoke never condemns the key: a foreign cache is the client's, other refusals try another key", () => {
  const cache = google(403, "PERMISSION_DENIED", "CachedContent not found (or permission denied)");
  assert.equal(classifyHttpFailure(403, cache).kind, "client");
  for (
    const message of [
      "The caller does not have permission",
      "This API method requires billing to be enabled. Please enable billing on project #1.",
    ]
  ) {
    assert.equal(
      classifyHttpFailure(403, google(403, "PERMISSION_DENIED", message)).kind,
      "upstream",
      message,
    );
  }
});

Deno.test("Google refusing the deployment's location is a deployment problem, never a key's fault", () => {
  const location = google(
    400,
    "FAILED_PRECONDITION",
    "User location is not supported for the API use.",
  );
  assert.equal(
    classifyHttpFailure(400, location).kind,
    "client",
    "answered at once: every key fails",
  );
  assert.deepEqual(deploymentProblem(400, location), {
    kind: "location",
    message: "User location is not supported for the API use.",
  });
  const freeTier = google(
    400,
    "FAILED_PRECONDITION",
    "Gemini API free tier is not available in your country. Please enable billing on your project in Google AI Studio.",
  );
  assert.equal(classifyHttpFailure(400, freeTier).kind, "unserved", "a billed key may serve");
  assert.equal(deploymentProblem(400, freeTier)?.kind, "free_tier_location");
  // Billing a project needs otherwise stays the key's (a human must act on it).
  const billing = google(400, "FAILED_PRECONDITION", "Please enable billing for this project.");
  assert.equal(classifyHttpFailure(400, billing).kind, "key_invalid");
  assert.equal(deploymentProblem(400, billing), null);
  assert.equal(deploymentProblem(400, google(400, "INVALID_ARGUMENT", "Bad request")), null);
  assert.equal(deploymentProblem(503, location), null);
});

Deno.test("a 429 yields retryDelay and tells per-day quotas from per-minute ones", () => {
  const minute = google(429, "RESOURCE_EXHAUSTED", "Quota exceeded", [
    {
      "@type": "type.googleapis.com/google.rpc.QuotaFailure",
      violations: [{ quotaId: "GenerateRequestsPerMinutePerProjectPerModel-FreeTier" }],
    },
    { "@type": "type.googleapis.com/google.rpc.RetryInfo", retryDelay: "47s" },
  ]);
  assert.deepEqual(classifyHttpFailure(429, minute), {
    kind: "rate_limited",
    retryAfterMs: 47_000,
    perDay: false,
    reason: "Quota exceeded",
  });
  const day = google(429, "RESOURCE_EXHAUSTED", "Quota exceeded", [
    {
      "@type": "type.googleapis.com/google.rpc.QuotaFailure",
      violations: [{ quotaId: "GenerateRequestsPerDayPerProjectPerModel-FreeTier" }],
    },
  ]);
  const c = classifyHttpFailure(429, day);
  assert.equal(c.kind === "rate_limited" && c.perDay, true);
  assert.equal(c.kind === "rate_limited" && c.retryAfterMs, null);
});

Deno.test("5xx, timeouts and non-JSON error bodies are upstream trouble; 404 is the client's", () => {
  assert.equal(
    classifyHttpFailure(503, google(503, "UNAVAILABLE", "The model is overloaded.")).kind,
    "upstream",
  );
  assert.equal(classifyHttpFailure(500, "<html>oops</html>").kind, "upstream");
  assert.equal(classifyHttpFailure(504, "").kind, "upstream");
  assert.equal(
    classifyHttpFailure(404, google(404, "NOT_FOUND", "models/x is not found")).kind,
    "client",
  );
  const arrayWrapped = JSON.stringify([JSON.parse(google(429, "RESOURCE_EXHAUSTED", "q"))]);
  assert.equal(classifyHttpFailure(429, arrayWrapped).kind, "rate_limited");
});

Deno.test("parseDuration reads protobuf durations", () => {
  assert.equal(parseDuration("15s"), 15_000);
  assert.equal(parseDuration("2.5s"), 2_500);
  assert.equal(parseDuration("15"), null);
  assert.equal(parseDuration(undefined), null);
});

Deno.test("upstream text is scrubbed of the key used and of anything shaped like a key, in both formats", () => {
  const used = { secret: "my-own-token-1234", masked: "my-o…1234" };
  const other = "AIza" + "B".repeat(35);
  const auth = "AQ." + "Ab_-9".repeat(10);
  const out = redactSecret(`key my-own-token-1234, also ${other} and ${auth}.`, used);
  assert.equal(out, `key my-o…1234, also AIza…BBBB and AQ.A…b_-9.`);
  assert.ok(!out.includes(other) && !out.includes(auth) && !out.includes(used.secret));
});

Deno.test("an empty answer is one that ended normally without a single part, and nothing blocked", () => {
  const ended = (content: unknown, finishReason?: string) =>
    ({
      candidates: [{ content, finishReason, index: 0 }],
    }) as GenerateContentResponse;
  assert.equal(isEmptyAnswer(ended({ role: "model", parts: [] }, "STOP")), true);
  assert.equal(isEmptyAnswer(ended(undefined, "STOP")), true);
  assert.equal(isEmptyAnswer({ candidates: [] }), true);
  assert.equal(isEmptyAnswer(ended({ parts: [{ text: "" }] }, "STOP")), false);
  // A filtered or truncated answer says why it is empty: it is an answer.
  assert.equal(isEmptyAnswer(ended(undefined, "SAFETY")), false);
  assert.equal(isEmptyAnswer(ended(undefined, "MAX_TOKENS")), false);
  assert.equal(isEmptyAnswer({ promptFeedback: { blockReason: "OTHER" } }), false);
  // A stream is empty when its first event already ends it.
  assert.equal(isEmptyStream(ended(undefined, "STOP")), true);
  assert.equal(isEmptyStream(ended(undefined)), false);
  assert.equal(isEmptyStream({ usageMetadata: { promptTokenCount: 1 } }), false);
});

Deno.test("refusals of thinking settings are told from other 400s; the body drops only thinkingConfig", () => {
  for (
    const message of [
      "Thinking is not enabled for models/gemma-3-27b-it",
      "Thinking level MEDIUM is not supported for this model.",
      "Budget 0 is invalid. This model only works in thinking mode.",
      "The thinking budget 99999 is invalid. Please choose a value between 128 and 32768.",
    ]
  ) assert.ok(refusesThinking(400, google(400, "INVALID_ARGUMENT", message)), message);
  assert.ok(
    !refusesThinking(400, google(400, "INVALID_ARGUMENT", "Invalid JSON payload received.")),
  );
  assert.ok(!refusesThinking(503, google(503, "UNAVAILABLE", "Thinking is not enabled")));
  // A schema problem naming a field "budget" is not about thinking.
  assert.ok(
    !refusesThinking(
      400,
      google(400, "INVALID_ARGUMENT", "Invalid value at 'tools[0].parameters.budget' (type)"),
    ),
  );
  const body = {
    contents: [],
    generationConfig: { temperature: 0.5, thinkingConfig: { thinkingLevel: "HIGH" } },
  };
  assert.deepEqual(JSON.parse(withoutThinking(body)!), {
    contents: [],
    generationConfig: { temperature: 0.5 },
  });
  assert.equal(withoutThinking({ contents: [], generationConfig: {} }), null);
  assert.equal(withoutThinking({ contents: [] }), null);
});
