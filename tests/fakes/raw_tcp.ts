/**
 * A bare TCP server on 127.0.0.1 for tests that need an upstream to misbehave below HTTP: each
 * connection goes to `serve` with its index (0, 1, …); a connection is closed once `serve` is done
 * with it (or fails), and `close()` stops listening and closes what is still open.
 *
 * @module
 */

/** A running raw server. */
export interface RawTcpServer {
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** Connections accepted so far. */
  readonly connections: number;
  close(): Promise<void>;
}

function closeQuietly(conn: Deno.Conn): void {
  try {
    conn.close();
  } catch {
    // closed already
  }
}

/** Starts the server; `serve` handles one connection. */
export function rawTcpServer(
  serve: (conn: Deno.Conn, index: number) => Promise<void>,
): RawTcpServer {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const open = new Set<Deno.Conn>();
  let connections = 0;
  const accepting = (async () => {
    for await (const conn of listener) {
      open.add(conn);
      serve(conn, connections++).catch(() => {
        // closed by the client or by the test
      }).finally(() => {
        open.delete(conn);
        closeQuietly(conn);
      });
    }
  })().catch(() => {});
  return {
    url: `http://127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    get connections() {
      return connections;
    },
    async close() {
      listener.close();
      for (const conn of open) closeQuietly(conn);
      await accepting;
    },
  };
}
