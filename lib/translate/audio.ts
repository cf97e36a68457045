/**
 * OpenAI's audio endpoints on Gemini (pure): speech (`/v1/audio/speech`) through a Gemini TTS
 * model, whose raw 16-bit PCM is wrapped as WAV; transcription (`/v1/audio/transcriptions`)
 * through a Gemini model that listens to the audio inline and writes what it hears.
 */
import type { GenerateContentRequest, GenerateContentResponse } from "../gemini/types.ts";
import { mimeFromFilename, TranslateError } from "./chat_request.ts";
import { fromBase64 } from "../secrets.ts";

/** The TTS model OpenAI speech model names stand for (unless an alias says else). */
export const DEFAULT_TTS_MODEL = "gemini-2.5-flash-preview-tts";
/** The model OpenAI transcription model names stand for. */
export const DEFAULT_TRANSCRIBE_MODEL = "gemini-2.5-flash";

/** Gemini's prebuilt voices. */
export const GEMINI_VOICES = [
  "Zephyr",
  "Puck",
  "Charon",
  "Kore",
  "Fenrir",
  "Leda",
  "Orus",
  "Aoede",
  "Callirrhoe",
  "Autonoe",
  "Enceladus",
  "Iapetus",
  "Umbriel",
  "Algieba",
  "Despina",
  "Erinome",
  "Algenib",
  "Rasalgethi",
  "Laomedeia",
  "Achernar",
  "Alnilam",
  "Schedar",
  "Gacrux",
  "Pulcherrima",
  "Achird",
  "Zubenelgenubi",
  "Vindemiatrix",
  "Sadachbia",
  "Sadaltager",
  "Sulafat",
] as const;

/** OpenAI's voices, each with a Gemini voice of a similar character. */
const OPENAI_VOICES: Record<string, string> = {
  alloy: "Zephyr",
  ash: "Charon",
  ballad: "Algieba",
  coral: "Aoede",
  echo: "Puck",
  fable: "Fenrir",
  onyx: "Orus",
  nova: "Kore",
  sage: "Despina",
  shimmer: "Leda",
  verse: "Achird",
  marin: "Sulafat",
  cedar: "Iapetus",
};

const BY_LOWER = new Map(GEMINI_VOICES.map((v) => [v.toLowerCase(), v]));

/** The Gemini voice of `voice` (a Gemini voice name in any case, or an OpenAI voice). */
export function geminiVoice(voice: string): string {
  const v = voice.trim().toLowerCase();
  const found = BY_LOWER.get(v) ?? OPENAI_VOICES[v];
  if (!found) {
    throw new TranslateError(
      `Unknown voice '${voice}': use an OpenAI voice (alloy, echo, nova, ...) or a Gemini voice ` +
        `(${GEMINI_VOICES.slice(0, 6).join(", ")}, ...)`,
      "voice",
    );
  }
  return found;
}

/** The generateContent body that speaks `input` with `voice`, styled by `instructions`. */
export function speechBody(
  input: string,
  options: { voice: string; instructions?: string | null },
): GenerateContentRequest {
  const style = options.instructions?.trim();
  return {
    contents: [{ role: "user", parts: [{ text: style ? `${style}: ${input}` : input }] }],
    generationConfig: {
      responseModalities: ["AUDIO"],
      speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: options.voice } } },
    },
  };
}

/** The spoken audio of a TTS answer: base64 PCM and its sample rate, or null when there is none. */
export function speechAudio(
  answer: GenerateContentResponse,
): { pcm: Uint8Array; sampleRate: number } | null {
  for (const p of answer.candidates?.[0]?.content?.parts ?? []) {
    const inline = p.inlineData;
    if (!inline || !inline.mimeType.startsWith("audio/")) continue;
    const rate = /rate=(\d+)/.exec(inline.mimeType);
    return { pcm: fromBase64(inline.data), sampleRate: rate ? Number(rate[1]) : 24_000 };
  }
  return null;
}

/** A WAV file of mono 16-bit little-endian PCM. */
export function wavOf(pcm: Uint8Array, sampleRate: number): Uint8Array {
  const out = new Uint8Array(44 + pcm.length);
  const view = new DataView(out.buffer);
  const ascii = (at: number, text: string) => {
    for (let i = 0; i < text.length; i++) out[at + i] = text.charCodeAt(i);
  };
  ascii(0, "RIFF");
  view.setUint32(4, 36 + pcm.length, true);
  ascii(8, "WAVE");
  ascii(12, "fmt ");
  view.setUint32(16, 16, true); // fmt chunk size
  view.setUint16(20, 1, true); // PCM
  view.setUint16(22, 1, true); // mono
  view.setUint32(24, sampleRate, true);
  view.setUint32(28, sampleRate * 2, true); // byte rate
  view.setUint16(32, 2, true); // block align
  view.setUint16(34, 16, true); // bits per sample
  ascii(36, "data");
  view.setUint32(40, pcm.length, true);
  out.set(pcm, 44);
  return out;
}

/** Other names of the audio types Gemini lists. */
const TYPE_NAMES: Record<string, string> = {
  "audio/mpeg": "audio/mp3",
  "audio/mpga": "audio/mp3",
  "audio/x-wav": "audio/wav",
  "audio/wave": "audio/wav",
  "audio/x-flac": "audio/flac",
  "audio/x-m4a": "audio/mp4",
  "audio/m4a": "audio/mp4",
  "audio/x-aiff": "audio/aiff",
  "video/webm": "audio/webm",
};

/**
 * The audio type of an uploaded file: its own when it says audio, else by its extension (the
 * table chat attachments use, `mimeFromFilename`).
 */
export function audioTypeOf(file: { type: string; name: string }): string {
  const own = file.type.split(";")[0].trim().toLowerCase();
  if (own.startsWith("audio/") || own === "video/webm") return TYPE_NAMES[own] ?? own;
  const guessed = mimeFromFilename(file.name) ?? "";
  const type = guessed.startsWith("audio/") || guessed === "video/webm"
    ? TYPE_NAMES[guessed] ?? guessed
    : null;
  if (!type) {
    throw new TranslateError(
      `Unsupported audio file '${file.name}': send wav, mp3, m4a, aac, ogg, opus, flac or webm`,
      "file",
    );
  }
  return type;
}

/**
 * The generateContent body that transcribes base64 `audio` of type `mimeType` (or, with
 * `translate`, translates the speech into English).
 */
export function transcriptionBody(
  audio: string,
  options: {
    mimeType: string;
    language?: string | null;
    prompt?: string | null;
    temperature?: number;
    translate?: boolean;
  },
): GenerateContentRequest {
  let instruction = options.translate
    ? "Translate the speech in this audio into English. Answer with the English text only: no " +
      "introduction, no notes, no timestamps."
    : "Transcribe this audio verbatim. Answer with the transcript only: no introduction, no " +
      "notes, no timestamps.";
  if (options.language) instruction += ` The speech is in the language '${options.language}'.`;
  if (options.prompt) {
    instruction += ` Context, for names and spelling (do not transcribe it): ${options.prompt}`;
  }
  const body: GenerateContentRequest = {
    contents: [{
      role: "user",
      parts: [{ inlineData: { mimeType: options.mimeType, data: audio } }, { text: instruction }],
    }],
  };
  if (options.temperature !== undefined) {
    body.generationConfig = { temperature: options.temperature };
  }
  return body;
}
