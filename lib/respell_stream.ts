/**
 * Respells the chat route's SSE answer in another API's events (`/v1/responses`, `/v1/messages`):
 * each chat chunk, the end (`[DONE]`) and an error event go to the other API's translator;
 * comments (the heartbeats of a slow start) pass as they are.
 */
import type { ChatCompletionChunk } from "./translate/chat_stream.ts";

/** What the other API makes of the chat stream's events (as SSE text). */
export interface Respeller {
  /** The events of one chat chunk. */
  chunk(chunk: ChatCompletionChunk): string;
  /**
   * The events that end the answer. `send` sends text at once, before what the end waits for (a
   * store, say).
   */
  end(send: (text: string) => void): string | Promise<string>;
  /**
   * What a heartbeat of a slow start (an SSE comment, given) becomes: the API's own keep-alive,
   * or the opening events, so that the client sees the answer begin. Default: the comment.
   */
  beat?(comment: string): string;
  /** The events of an answer that failed part way (`type`: OpenAI's error type). */
  fail(error: { code: string; message: string; type: string }): string;
}

const encoder = new TextEncoder();

/** A transform from the chat route's SSE bytes to `respeller`'s. */
export function respellChatStream(respeller: Respeller): TransformStream<Uint8Array, Uint8Array> {
  const decoder = new TextDecoder();
  let buffer = "";
  let done = false;
  const translate = (
    event: string,
    send: (text: string) => void,
  ): string | Promise<string> => {
    if (done || event === "") return "";
    if (event.startsWith(":")) {
      const comment = `${event}\n\n`;
      return respeller.beat ? respeller.beat(comment) : comment;
    }
    if (!event.startsWith("data: ")) return "";
    const data = event.slice(6);
    if (data === "[DONE]") {
      done = true;
      return respeller.end(send);
    }
    const parsed = JSON.parse(data) as ChatCompletionChunk | {
      error: { message: string; code: string | null; type?: string };
    };
    if (!("error" in parsed)) return respeller.chunk(parsed);
    done = true;
    return respeller.fail({
      code: parsed.error.code ?? "upstream_error",
      message: parsed.error.message,
      type: parsed.error.type ?? "server_error",
    });
  };
  const drain = async (controller: TransformStreamDefaultController<Uint8Array>) => {
    let out = "";
    const send = (text: string) => {
      out += text;
      if (out) controller.enqueue(encoder.encode(out));
      out = "";
    };
    let at: number;
    while ((at = buffer.indexOf("\n\n")) !== -1) {
      const event = buffer.slice(0, at);
      buffer = buffer.slice(at + 2);
      // Read `out` after the wait: `send` may have sent it meanwhile.
      const text = await translate(event, send);
      out += text;
    }
    if (out) controller.enqueue(encoder.encode(out));
  };
  return new TransformStream({
    transform(chunk, controller) {
      buffer += decoder.decode(chunk, { stream: true });
      return drain(controller);
    },
    async flush(controller) {
      buffer += decoder.decode();
      await drain(controller);
      if (!done) {
        // The chat stream ended without its end: say so rather than pass it as complete.
        done = true;
        const text = respeller.fail({
          code: "upstream_stream_error",
          message: "The answer's stream ended early",
          type: "server_error",
        });
        controller.enqueue(encoder.encode(text));
      }
    },
  });
}
