/**
 * OpenAI's audio endpoints on Gemini:
 * - `POST /v1/audio/speech`: a Gemini TTS model speaks `input` with a Gemini voice (OpenAI's voice
 *   names map to similar ones); its 24 kHz 16-bit PCM is answered as WAV, or raw with `pcm`.
 * - `POST /v1/audio/transcriptions` and `/v1/audio/translations`: a Gemini model (by default
 *   `gemini-2.5-flash`, which `whisper-1` and `gpt-4o-*transcribe` map to) listens to the uploaded
 *   audio inline and writes it down, or translates it into English.
 */
import { Hono } from "hono";
import { requestAccount, type RequestOutcome } from "../../lib/accounting.ts";
import { assertModelAllowed } from "../../lib/auth/user_limits.ts";
import type { AppEnv, Gateway } from "../../lib/gateway.ts";
import { generateOnce } from "../../lib/gemini/generate.ts";
import type { GenerateContentRequest, GenerateContentResponse } from "../../lib/gemini/types.ts";
import { SpeechRequestSchema, TranscriptionFieldsSchema } from "../../lib/openai/audio_schema.ts";
import { failureToOpenAi, OpenAiError, translating } from "../../lib/openai/errors.ts";
import { parseWith, readBody, readForm } from "../../lib/openai/request.ts";
import { failureOutcome } from "../../lib/pool/failover.ts";
import { toBase64 } from "../../lib/secrets.ts";
import { splitText } from "../../lib/translate/chat_response.ts";
import {
  audioTypeOf,
  DEFAULT_TRANSCRIBE_MODEL,
  DEFAULT_TTS_MODEL,
  geminiVoice,
  speechAudio,
  speechBody,
  transcriptionBody,
  wavOf,
} from "../../lib/translate/audio.ts";
import { defaultedModel } from "../../lib/translate/models.ts";
import { markWhole } from "../../lib/whole_body.ts";

/** Audio sent inline, at most (Gemini takes about 20 MB per request, base64 included). */
export const MAX_AUDIO_BYTES = 14 * 1024 * 1024;

/** The 413 of an audio upload of `bytes` bytes. */
function audioTooLarge(bytes: number): OpenAiError {
  return new OpenAiError(
    413,
    `The upload is ${bytes} bytes; audio files of at most ${MAX_AUDIO_BYTES} bytes are accepted`,
    { param: "file", code: "request_too_large" },
  );
}

/**
 * One generateContent call (`generateOnce`: failover, retries), accounted as the request: its
 * answer, or a thrown OpenAI error.
 */
async function generated(
  gw: Gateway,
  req: Request,
  options: { model: string; userId: string; body: GenerateContentRequest; estimatedTokens: number },
): Promise<{ answer: GenerateContentResponse; account: (o: Partial<RequestOutcome>) => void }> {
  const startedAt = gw.now();
  const result = await generateOnce(gw, {
    model: options.model,
    body: options.body,
    signal: gw.clients.signalOf(req),
    estimatedTokens: options.estimatedTokens,
  });
  const account = requestAccount(gw, req, {
    model: options.model,
    userId: options.userId,
    attempts: result.attempts,
    startedAt,
  });
  if (!result.ok) {
    account(failureOutcome(result.failure));
    throw failureToOpenAi(result.failure);
  }
  return { answer: result.value, account };
}

/** Builds the audio routes. */
export function audioRoutes(gw: Gateway): Hono<AppEnv> {
  const app = new Hono<AppEnv>();

  app.post("/speech", async (c) => {
    const req = await readBody(c.req.raw, SpeechRequestSchema);
    if (req.stream_format === "sse") {
      throw new OpenAiError(400, "Streamed speech (stream_format 'sse') is not supported", {
        param: "stream_format",
      });
    }
    const settings = await gw.settings.get();
    const userKey = c.get("userKey");
    const model = defaultedModel(req.model, {
      aliases: settings.aliases,
      fallback: DEFAULT_TTS_MODEL,
      openai: /^(tts-|gpt-4o(-mini)?-tts)/,
    });
    const voice = translating(() => geminiVoice(req.voice));
    await assertModelAllowed(gw, { userKey, model });
    const { answer, account } = await generated(gw, c.req.raw, {
      model,
      userId: userKey.id,
      body: speechBody(req.input, { voice, instructions: req.instructions }),
      estimatedTokens: Math.ceil(req.input.length / 4),
    });
    const audio = speechAudio(answer);
    if (!audio) {
      // Gemini answered (and counted its tokens), in words instead of audio.
      account({
        ok: false,
        served: true,
        status: 502,
        errorClass: "upstream",
        usage: answer.usageMetadata,
      });
      const said = splitText(answer.candidates?.[0]?.content?.parts ?? []).text.trim();
      throw new OpenAiError(
        502,
        `The model sent no audio${said ? `; it said: ${said.slice(0, 300)}` : ""}`,
        { code: "upstream_error" },
      );
    }
    account({ usage: answer.usageMetadata });
    const raw = req.response_format === "pcm";
    const bytes = raw ? audio.pcm : wavOf(audio.pcm, audio.sampleRate);
    return markWhole(
      new Response(bytes as Uint8Array<ArrayBuffer>, {
        headers: {
          "content-type": raw ? `audio/pcm;rate=${audio.sampleRate}` : "audio/wav",
          "content-length": String(bytes.length),
        },
      }),
    );
  });

  for (const [path, translate] of [["/transcriptions", false], ["/translations", true]] as const) {
    app.post(path, async (c) => {
      const { form, fields } = await readForm(c.req.raw, {
        maxBytes: MAX_AUDIO_BYTES,
        tooLarge: audioTooLarge,
        hint: "Send the audio as multipart/form-data with a 'file' field",
        param: "file",
      });
      const file = form.get("file");
      if (!(file instanceof File) || file.size === 0) {
        throw new OpenAiError(400, "The 'file' field must be a non-empty audio file", {
          param: "file",
        });
      }
      if (file.size > MAX_AUDIO_BYTES) throw audioTooLarge(file.size);
      const req = parseWith(TranscriptionFieldsSchema, fields);
      const format = req.response_format ?? "json";
      if (format === "srt" || format === "vtt") {
        throw new OpenAiError(
          400,
          `response_format '${format}' needs timestamps, which Gemini does not give; use json, ` +
            "text or verbose_json",
          { param: "response_format" },
        );
      }
      const mimeType = translating(() => audioTypeOf(file));
      const settings = await gw.settings.get();
      const userKey = c.get("userKey");
      const model = defaultedModel(req.model, {
        aliases: settings.aliases,
        fallback: DEFAULT_TRANSCRIBE_MODEL,
        openai: /^(whisper-|gpt-4o(-mini)?-transcribe)/,
      });
      await assertModelAllowed(gw, { userKey, model });
      const body = transcriptionBody(toBase64(new Uint8Array(await file.arrayBuffer())), {
        mimeType,
        language: translate ? null : req.language,
        prompt: req.prompt,
        temperature: req.temperature,
        translate,
      });
      const { answer, account } = await generated(gw, c.req.raw, {
        model,
        userId: userKey.id,
        body,
        // Gemini counts 32 tokens per second of audio; a second of compressed speech is ~16 KB.
        estimatedTokens: Math.ceil(file.size / 500),
      });
      account({ usage: answer.usageMetadata });
      const text = splitText(answer.candidates?.[0]?.content?.parts ?? []).text.trim();
      if (format === "text") {
        return markWhole(
          new Response(text, { headers: { "content-type": "text/plain; charset=utf-8" } }),
        );
      }
      if (format === "verbose_json") {
        return markWhole(c.json({
          task: translate ? "translate" : "transcribe",
          language: translate ? "english" : req.language ?? null,
          text,
          segments: [],
        }));
      }
      return markWhole(c.json({ text }));
    });
  }
  return app;
}
