/**
 * Every island by name: the server wrapper (`lib/ui/island.tsx`) marks islands with these names and
 * the client entry (`lib/ui/client.tsx`) hydrates them with these components.
 */
import { Aliases } from "./aliases.tsx";
import { CopyButton } from "./copy_button.tsx";
import { Dashboard } from "./dashboard.tsx";
import { GeminiKeys } from "./gemini_keys.tsx";
import { Jobs } from "./jobs.tsx";
import { KeyWeights } from "./key_weights.tsx";
import { ModelLimits } from "./model_limits.tsx";
import { ModelsTable } from "./models_table.tsx";
import { Projects } from "./projects.tsx";
import { RequestLog } from "./request_log.tsx";
import { SettingsForm } from "./settings_form.tsx";
import { UserKeys } from "./user_keys.tsx";

/** The islands, by the name the server marks them with. */
export const ISLANDS = {
  Aliases,
  CopyButton,
  Dashboard,
  GeminiKeys,
  Jobs,
  KeyWeights,
  ModelLimits,
  ModelsTable,
  Projects,
  RequestLog,
  SettingsForm,
  UserKeys,
};

/** The name of an island. */
export type IslandName = keyof typeof ISLANDS;
