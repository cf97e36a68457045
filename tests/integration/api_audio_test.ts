/**
 * OpenAI's audio endpoints on Gemini, driven by the official `openai` client: speech through a TTS
 * model (WAV or raw PCM, voices mapped), transcription and translation of uploaded audio.
 */
import assert from "node:assert/strict";
import OpenAI from "openai";
import { startGateway, type TestGateway } from "./harness.ts";

const OK = { kind: "ok" } as const;

type GenBody = {
  contents: { parts: Record<string, unknown>[] }[];
  generationConfig?: Record<string, unknown>;
};

function lastGenerate(gw: TestGateway): { path: string; body: GenBody } {
  const r = gw.fake.requests.filter((q) => q.path.endsWith(":generateContent")).at(-1)!;
  return { path: r.path, body: r.body as GenBody };
}

Deno.test("speech: a TTS model speaks with a mapped voice; the PCM comes back as WAV, or raw", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const res = await client.audio.speech.create({
      model: "tts-1",
      voice: "alloy",
      input: "Hello there",
    });
    assert.equal(res.headers.get("content-type"), "audio/wav");
    const wav = new Uint8Array(await res.arrayBuffer());
    const view = new DataView(wav.buffer);
    const text = (a: number, b: number) => String.fromCharCode(...wav.slice(a, b));
    assert.deepEqual([text(0, 4), text(8, 12), text(36, 40)], ["RIFF", "WAVE", "data"]);
    assert.equal(view.getUint32(24, true), 24_000, "sample rate");
    assert.equal(view.getUint16(34, true), 16, "bits per sample");
    assert.equal(view.getUint32(40, true), "Hello there".length * 4, "the PCM bytes");
    assert.equal(wav.length, 44 + "Hello there".length * 4);
    const sent = lastGenerate(gw);
    assert.match(sent.path, /gemini-2\.5-flash-preview-tts:generateContent$/);
    assert.deepEqual(sent.body.generationConfig, {
      responseModalities: ["AUDIO"],
      speechConfig: { voiceConfig: { prebuiltVoiceConfig: { voiceName: "Zephyr" } } },
    });
    const pcm = await client.audio.speech.create({
      model: "gemini-2.5-flash-preview-tts",
      voice: "kore" as "alloy",
      input: "Hi",
      instructions: "Say cheerfully",
      response_format: "pcm",
    });
    assert.equal(pcm.headers.get("content-type"), "audio/pcm;rate=24000");
    assert.equal((await pcm.arrayBuffer()).byteLength, "Say cheerfully: Hi".length * 4);
    const styled = lastGenerate(gw).body;
    assert.deepEqual(styled.contents[0].parts, [{ text: "Say cheerfully: Hi" }]);
    assert.equal(
      (styled.generationConfig?.speechConfig as {
        voiceConfig: { prebuiltVoiceConfig: { voiceName: string } };
      })
        .voiceConfig.prebuiltVoiceConfig.voiceName,
      "Kore",
    );
    await assert.rejects(
      client.audio.speech.create({ model: "tts-1", voice: "robot" as "alloy", input: "x" }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === "voice",
    );
  } finally {
    await gw.close();
  }
});

Deno.test("transcriptions: the audio goes to Gemini inline; json, text and verbose_json answers; translations into English", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const client = gw.openai(await gw.createUserKey());
    const audio = new Uint8Array(3000).fill(7);
    const file = () => new File([audio], "note.mp3", { type: "audio/mpeg" });
    const json = await client.audio.transcriptions.create({
      file: file(),
      model: "whisper-1",
      language: "zh",
    });
    assert.equal(json.text, "Heard 3000 bytes of audio/mp3");
    const sent = lastGenerate(gw);
    assert.match(sent.path, /gemini-2\.5-flash:generateContent$/);
    const [inline, instruction] = sent.body.contents[0].parts;
    assert.equal((inline.inlineData as { mimeType: string }).mimeType, "audio/mp3");
    assert.match(String(instruction.text), /Transcribe.*language 'zh'/s);
    const text = await client.audio.transcriptions.create({
      file: new File([audio], "memo.wav"),
      model: "gpt-4o-transcribe",
      response_format: "text",
    });
    assert.equal(text, "Heard 3000 bytes of audio/wav");
    const verbose = await client.audio.transcriptions.create({
      file: file(),
      model: "whisper-1",
      response_format: "verbose_json",
    });
    assert.equal(verbose.text, "Heard 3000 bytes of audio/mp3");
    const translated = await client.audio.translations.create({ file: file(), model: "whisper-1" });
    assert.equal(translated.text, "Heard 3000 bytes of audio/mp3");
    assert.match(String(lastGenerate(gw).body.contents[0].parts[1].text), /^Translate .* English/);
  } finally {
    await gw.close();
  }
});

Deno.test("bad transcription requests: no file, unknown types, subtitles, a file too large", async () => {
  const gw = await startGateway({ keys: { "AIzaGood-key-0001": OK } });
  try {
    const apiKey = await gw.createUserKey();
    const client = gw.openai(apiKey);
    const form = new FormData();
    form.set("model", "whisper-1");
    const noFile = await fetch(`${gw.url}/v1/audio/transcriptions`, {
      method: "POST",
      headers: { authorization: `Bearer ${apiKey}` },
      body: form,
    });
    assert.equal(noFile.status, 400);
    assert.equal((await noFile.json()).error.param, "file");
    await assert.rejects(
      client.audio.transcriptions.create({
        file: new File([new Uint8Array(10)], "notes.txt", { type: "text/plain" }),
        model: "whisper-1",
      }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === "file",
    );
    await assert.rejects(
      client.audio.transcriptions.create({
        file: new File([new Uint8Array(10)], "a.wav"),
        model: "whisper-1",
        response_format: "srt",
      }),
      (e: unknown) => e instanceof OpenAI.BadRequestError && e.param === "response_format",
    );
    await assert.rejects(
      client.audio.transcriptions.create({
        file: new File([new Uint8Array(15 * 1024 * 1024)], "long.wav"),
        model: "whisper-1",
      }),
      (e: unknown) => e instanceof OpenAI.APIError && e.status === 413,
    );
    assert.equal(gw.fake.requests.filter((r) => r.path.endsWith(":generateContent")).length, 0);
  } finally {
    await gw.close();
  }
});
