/**
 * Composition root: config -> KV -> app -> cron jobs -> Deno.serve. Nothing else lives here.
 * The crons are registered at the top level of `lib/jobs/crons.ts` (imported here, before
 * `Deno.serve`, as Deno Deploy requires) and run once the gateway is handed to them.
 */
import { ConfigError, loadConfig } from "./lib/config.ts";
import { openGateway } from "./lib/bootstrap.ts";
import { resolveEncryptionKey } from "./lib/local_secret.ts";
import { WrongEncryptionKeyError } from "./lib/store/meta.ts";
import { provideCronGateway } from "./lib/jobs/crons.ts";

async function start(): Promise<void> {
  const config = loadConfig();
  const encryption = await resolveEncryptionKey(config);
  if (config.kvPath && config.kvPath !== ":memory:" && config.kvPath.includes("/")) {
    await Deno.mkdir(config.kvPath.slice(0, config.kvPath.lastIndexOf("/")), { recursive: true });
  }
  const kv = await Deno.openKv(config.kvPath);
  const { app, report } = await openGateway(config, { kv, encryptionKey: encryption.key });
  provideCronGateway(app.gateway);

  const server = Deno.serve({
    port: config.port,
    onListen({ hostname, port }) {
      const host = hostname === "0.0.0.0" || hostname === "::" ? "localhost" : hostname;
      const base = `http://${host}:${port}`;
      console.log(`Gemini gateway listening on ${base}`);
      if (config.kvPath) console.log(`  KV database:     ${config.kvPath}`);
      console.log(`  OpenAI base URL: ${base}/v1`);
      console.log(`  Gemini base URL: ${base}  (for @google/genai and gemini-cli)`);
      console.log(`  Admin UI:        ${base}/admin`);
      console.log(`  Admin API:       ${base}/admin/api  (Authorization: Bearer <admin password>)`);
      if (report.generatedAdminPassword) {
        console.log(
          `  Admin password:  ${report.generatedAdminPassword}  (generated now and shown once; ` +
            `only its hash is kept. Set ADMIN_PASSWORD to choose your own.)`,
        );
      } else if (!config.adminPassword && config.onDeploy) {
        console.log("  Admin area locked: set ADMIN_PASSWORD in the app's environment variables.");
      }
      if (encryption.createdFile) {
        console.log(`  Encryption key:  generated and kept in ${encryption.createdFile}`);
      }
      if (report.importedKeys || report.duplicateKeys || report.deletedKeys) {
        const deleted = report.deletedKeys
          ? `, ${report.deletedKeys} deleted by the admin (not imported again)`
          : "";
        console.log(
          `  GEMINI_KEYS:     ${report.importedKeys} imported, ${report.duplicateKeys} already present${deleted}`,
        );
      }
    },
  }, app.fetch);

  const shutdown = async () => {
    await server.shutdown();
    // Writes the batched usage and gives back user-limit leases (see lib/accounting.ts).
    await app.shutdown();
    kv.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", shutdown);
  if (Deno.build.os !== "windows") Deno.addSignalListener("SIGTERM", shutdown);
}

if (import.meta.main) {
  try {
    await start();
  } catch (err) {
    if (err instanceof ConfigError || err instanceof WrongEncryptionKeyError) {
      console.error(err.message);
      Deno.exit(1);
    }
    throw err;
  }
}
