/**
 * Names a chat request's field in the words of the request it was spelled from (`/v1/responses`,
 * `/v1/messages`), for the errors the chat path raises about it (pure).
 */

/** Where one chat message came from: the caller's field, each of its tool calls', parts'. */
export interface MessageSource {
  message: string;
  calls: string[];
  /** Each content part's field, when the parts came from fields of their own. */
  parts?: string[];
}

/** Records message sources while chat messages are made; `into` is filled in order. */
export class SourceTrail {
  readonly into: MessageSource[];

  constructor(into: MessageSource[] = []) {
    this.into = into;
  }

  /** A message made from `param` (its content parts from `parts`, when they are known). */
  message(param: string, parts?: string[]): void {
    this.into.push(parts ? { message: param, calls: [], parts } : { message: param, calls: [] });
  }

  /** A tool call from `param`, joined to the last message (`joined`) or in a message of its own. */
  call(param: string, joined: boolean): void {
    if (joined && this.into.length) this.into.at(-1)!.calls.push(param);
    else this.into.push({ message: param, calls: [param] });
  }
}

/**
 * A mapper of chat params (`messages[3].tool_calls[0].function.arguments`, `max_completion_tokens`)
 * to the caller's (`input[5]`, `max_output_tokens`): messages by their sources, top-level fields
 * by `fields`; null for a field the caller did not send as such.
 */
export function paramMapper(
  sources: readonly MessageSource[],
  fields: Readonly<Record<string, string>>,
): (param: string) => string | null {
  return (param) => {
    const m = /^messages\[(\d+)\](?:\.tool_calls\[(\d+)\]|\.content\[(\d+)\])?/.exec(param);
    if (m) {
      const source = sources[Number(m[1])];
      if (!source) return null;
      if (m[2] !== undefined) return source.calls[Number(m[2])] ?? source.message;
      if (m[3] !== undefined) return source.parts?.[Number(m[3])] ?? source.message;
      return source.message;
    }
    const top = /^[A-Za-z_]+/.exec(param)?.[0];
    return top !== undefined && Object.hasOwn(fields, top) ? fields[top] : null;
  };
}
