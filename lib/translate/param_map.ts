/**
 * Names a chat request's field in the words of the request it was spelled from (`/v1/responses`,
 * `/v1/messages`), for the errors the chat path raises about it (pure).
 */

/** Where one chat message came from: the caller's field, and each of its tool calls'. */
export interface MessageSource {
  message: string;
  calls: string[];
}

/** Records message sources while chat messages are made; `into` is filled in order. */
export class SourceTrail {
  readonly into: MessageSource[];

  constructor(into: MessageSource[] = []) {
    this.into = into;
  }

  /** A message made from `param`. */
  message(param: string): void {
    this.into.push({ message: param, calls: [] });
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
    const m = /^messages\[(\d+)\](?:\.tool_calls\[(\d+)\])?/.exec(param);
    if (m) {
      const source = sources[Number(m[1])];
      if (!source) return null;
      return m[2] === undefined ? source.message : source.calls[Number(m[2])] ?? source.message;
    }
    const top = /^[A-Za-z_]+/.exec(param)?.[0];
    return top !== undefined && Object.hasOwn(fields, top) ? fields[top] : null;
  };
}
